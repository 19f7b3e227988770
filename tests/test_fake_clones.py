"""FakeBinanceFutures clones: a synthetic symbol serves its source's data through the real AsyncClient."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from binance import AsyncClient

from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures

CLONES = {"S001USDT": "BTCUSDT", "S002USDT": "SOLUSDT"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceFutures]:
    async with FakeBinanceFutures(clones=CLONES) as server:
        yield server


@pytest.fixture
async def client(fake: FakeBinanceFutures) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(TEST_API_KEY, TEST_API_SECRET)
    c.FUTURES_URL = f"{fake.base_url}/fapi"  # public endpoints only: no signing, no clock offset needed
    yield c
    await c.close_connection()


@pytest.mark.parametrize(("interval", "limit"), [("5m", 301), ("1h", 50), ("4h", 300)])
async def test_clone_serves_the_same_candles_as_its_source(client: AsyncClient, interval: str,
                                                           limit: int) -> None:
    source = await client.futures_klines(symbol="BTCUSDT", interval=interval, limit=limit)
    clone = await client.futures_klines(symbol="S001USDT", interval=interval, limit=limit)
    assert len(clone) == limit
    assert [row[:6] for row in clone[:-1]] == [row[:6] for row in source[:-1]]  # closed candles
    assert clone[-1][0] == source[-1][0]  # the same forming candle


async def test_clone_has_its_sources_filters_under_its_own_name(client: AsyncClient,
                                                                 fake: FakeBinanceFutures) -> None:
    info = {e["symbol"]: e for e in (await client.futures_exchange_info())["symbols"]}
    assert set(info) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "S001USDT", "S002USDT"}
    clone, source = info["S002USDT"], info["SOLUSDT"]
    assert (clone["pair"], clone["baseAsset"], clone["quoteAsset"]) == ("S002USDT", "S002", "USDT")
    assert clone["filters"] == source["filters"]
    assert fake.price("S002USDT") == fake.price("SOLUSDT")
    assert fake.source_of("S002USDT") == "SOLUSDT" and fake.source_of("ETHUSDT") == "ETHUSDT"


async def test_clone_is_in_the_24h_tickers_and_has_funding(client: AsyncClient) -> None:
    tickers = {t["symbol"]: t for t in await client.futures_ticker()}
    assert tickers["S001USDT"]["quoteVolume"] == tickers["BTCUSDT"]["quoteVolume"]
    assert len(tickers) == 5
    clone = await client.futures_funding_rate(symbol="S001USDT", limit=3)
    source = await client.futures_funding_rate(symbol="BTCUSDT", limit=3)
    assert [(r["symbol"], r["fundingTime"], r["fundingRate"]) for r in clone] == [
        ("S001USDT", r["fundingTime"], r["fundingRate"]) for r in source]


def test_clone_names_are_checked() -> None:
    with pytest.raises(ValueError, match="clashes"):
        FakeBinanceFutures(clones={"BTCUSDT": "ETHUSDT"})
    with pytest.raises(ValueError, match="no exchangeInfo entry"):
        FakeBinanceFutures(clones={"S001USDT": "NOPEUSDT"})
