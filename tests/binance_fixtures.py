"""Fixtures shared by the adapter tests (loaded through tests/conftest.py): the fake Binance server, a manual
clock, a fake sleep, and the real adapter connected to the fake. A module overrides ``request_timeout`` to
make timeouts quicker."""

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


@pytest.fixture
def request_timeout() -> float:
    return 1.0


@pytest.fixture
async def ex(fake: FakeBinanceFutures, clock: ManualClock, sleeper: FakeSleep,
             request_timeout: float) -> AsyncIterator[BinanceFutures]:
    adapter = await BinanceFutures.connect(TEST_API_KEY, TEST_API_SECRET, base_url=fake.base_url, clock=clock,
                                           sleep=sleeper, request_timeout=request_timeout)
    yield adapter
    await adapter.close()
