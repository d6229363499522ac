"""Fixtures shared by the sandbox attacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.tes_server import ServedTes, bwrap_available, start_serve
from tests.support import require, stop_process


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTes]:
    """One local-runtime server for the attacks that cannot hang it."""
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    served = start_serve(
        tmp_path_factory.mktemp("hostile"), runtime="local", args=["--max-tasks", "8"]
    )
    yield served
    stop_process(served.proc)
