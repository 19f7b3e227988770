"""Fixtures shared by the adapter tests (loaded through tests/conftest.py): the fake Binance server, a manual
clock, a fake sleep, and the real adapter connected to the fake. The adapter's request timeout is generous
(a loaded machine never fires it by accident) except in tests marked ``hangs``, where the fake holds an answer on
purpose and the timeout must fire: there it is short, so the test does not wait long."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from core.clock import ManualClock
from engine.exchange.binance import BinanceFutures
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures, FakeSleep


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceFutures]:
    async with FakeBinanceFutures() as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC))


@pytest.fixture
def sleeper(clock: ManualClock) -> FakeSleep:
    return FakeSleep(clock)


#: The adapter's request timeout in a test marked ``hangs`` (the fake holds an answer for seconds: the timeout fires)
HANGING_TIMEOUT = 0.3
#: ... and in every other test: no request of the local fake takes that long, even on a loaded machine
REQUEST_TIMEOUT = 10.0


def timeout_for(node: pytest.Item) -> float:
    """The request timeout for the test ``node``: short where it makes the fake hang, generous elsewhere."""
    return HANGING_TIMEOUT if node.get_closest_marker("hangs") else REQUEST_TIMEOUT


@pytest.fixture
def request_timeout(request: pytest.FixtureRequest) -> float:
    return timeout_for(request.node)


@pytest.fixture
async def ex(fake: FakeBinanceFutures, clock: ManualClock, sleeper: FakeSleep,
             request_timeout: float) -> AsyncIterator[BinanceFutures]:
    adapter = await BinanceFutures.connect(TEST_API_KEY, TEST_API_SECRET, base_url=fake.base_url, clock=clock,
                                           sleep=sleeper, request_timeout=request_timeout)
    yield adapter
    await adapter.close()
