"""Root conftest: fixture plugins live in tests/fixtures/, one module per component."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Each real component's fixtures are a plugin module; add yours to this list.
pytest_plugins: list[str] = [
    "tests.fixtures.s3",
    "tests.fixtures.azurite",
    "tests.fixtures.tes_spec",
    "tests.fixtures.tes_server",
    "tests.fixtures.proxy",
]


def pytest_configure(config: pytest.Config) -> None:
    """As root, the local runtime's bwrap runs as ``nobody``, which must search the
    directories above each task's tree. pytest keeps ``/tmp/pytest-of-root`` 0700
    (and resets it at each session start), so root's runs get their own base temp
    directory, searchable (not readable) by others."""
    if os.geteuid() != 0 or config.option.basetemp is not None:
        return
    holder = Path(tempfile.mkdtemp(prefix="tesengine-tests-"))
    holder.chmod(0o711)
    config.option.basetemp = str(holder / "basetemp")
    config.stash[_HOLDER] = holder


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the base temp directory made by :func:`pytest_configure`."""
    holder = config.stash.get(_HOLDER, None)
    if holder is not None:
        shutil.rmtree(holder, ignore_errors=True)


_HOLDER = pytest.StashKey[Path]()


@pytest.fixture(scope="session", autouse=True)
def _sandbox_user_can_reach_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pytest makes its temp dirs 0700: as root, add search (not read) for others."""
    if os.geteuid() != 0:
        yield
        return
    base = tmp_path_factory.getbasetemp()
    base.chmod(base.stat().st_mode | 0o111)
    original = pytest.TempPathFactory.mktemp

    def mktemp(self: pytest.TempPathFactory, basename: str, numbered: bool = True) -> Path:
        path = original(self, basename, numbered)
        path.chmod(path.stat().st_mode | 0o111)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pytest.TempPathFactory, "mktemp", mktemp)
        yield


@pytest.fixture(autouse=True)
def _no_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from finding a developer's credentials or cloud metadata."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "AZURE_", "GOOGLE_", "TESENGINE_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every tesengine log record at DEBUG level."""
    caplog.set_level(logging.DEBUG, logger="tesengine")
    return caplog
