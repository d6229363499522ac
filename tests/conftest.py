"""Root conftest: fixture plugins live in tests/fixtures/, one module per component."""

from __future__ import annotations

import logging
import os

import pytest

# Each real component's fixtures are a plugin module; add yours to this list.
pytest_plugins: list[str] = [
    "tests.fixtures.s3",
    "tests.fixtures.azurite",
    "tests.fixtures.tes_spec",
    "tests.fixtures.tes_server",
    "tests.fixtures.proxy",
]


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
