"""Shared pieces of the reliability suite: retry test mode, backends behind a proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tesengine.config import BackendConfig, Config, StorageConfig
from tesengine.tes import retry


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Zero retry waits (the number of retries is kept); polling keeps its interval."""
    retry.set_testing(True)
    yield
    retry.set_testing(False)


def make_config(
    url: str,
    storage: Path | str,
    cache: Path,
    storage_config: StorageConfig | None = None,
    **kw: Any,
) -> Config:
    """A backend config for ``url``; ``storage`` is a folder or an object store URL."""
    base = storage.as_uri() if isinstance(storage, Path) else storage.rstrip("/")
    backend = BackendConfig(
        type="tes",
        url=url,
        inputs=f"{base}/inputs",
        outputs=f"{base}/outputs",
        interval=kw.pop("interval", 0.2),
        cache_dir=cache,
        **kw,
    )
    return Config(backend_name="faults", backend=backend, storage=storage_config or StorageConfig())


#: The whole suite (``nox -s faults`` sets FAULTS_FULL=1): full scenario sizes.
FULL = os.environ.get("FAULTS_FULL", "") == "1"
#: Mark a parameter as full-size: deselected in the default (quick) run.
full_only = pytest.mark.faults_full


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``faults_full`` tests unless FAULTS_FULL=1 (``nox -s faults``).

    Deselected, not skipped: the quick run is a chosen subset, and a skip in
    CI would mean a missing component.
    """
    if FULL:
        return
    full = [item for item in items if item.get_closest_marker("faults_full") is not None]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [item for item in items if item.get_closest_marker("faults_full") is None]
