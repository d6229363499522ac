"""Fixtures of the interoperability suite: the quirky fake servers, zero retry waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tesengine.tes import retry
from tests.peers.quirk_profiles import PROFILES
from tests.peers.quirky_tes import QuirkyTes


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Zero retry waits (the number of retries is kept): a throttling fake costs no time."""
    retry.set_testing(True)
    yield
    retry.set_testing(False)


@pytest.fixture(params=sorted(PROFILES))
async def quirky(request: pytest.FixtureRequest) -> AsyncIterator[QuirkyTes]:
    """Each quirky fake in turn (TESK, TES on Azure, Funnel), on a loopback port."""
    async with QuirkyTes(PROFILES[request.param]) as server:
        yield server


# The Sprocket fixtures (a plugin module of their own, imported here so that
# only this suite loads them).
from tests.fixtures.sprocket import sprocket  # noqa: E402, F401
