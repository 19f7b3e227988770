"""Composition of the backtest engines from Settings: the replay (the live trader over the paper exchange) and the
fast engine (the same policy and fill code over an in-memory account)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from app.configs import adaptive_config, breaker_config, exit_config, limits_config, risk_config
from app.runtime import build_consensus, build_market_service, build_trader, vote_log_config
from core.clock import ManualClock
from core.enums import Mode
from engine.backtest.account import SymbolData
from engine.backtest.fast import FastConfig, run_engine
from engine.backtest.learned_weights import LearnedRun, fast_scan_times, learn_over_scans
from engine.backtest.reference import build_reference_signals, scan_times
from engine.backtest.replay import BacktestSummary, DemoOptions, run_backtest
from engine.backtest.results import BacktestResult
from engine.backtest.signals import SymbolSignals
from engine.events import EventBus
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.types import KlineBatch, MarginType
from engine.trading.trader import Trader
from settings import Settings
from storage.repositories import Repositories
from strategies.consensus import Consensus

SCAN_DELAY = timedelta(seconds=5)


def paper_trader(settings: Settings, exchange: PaperExchange, repos: Repositories, bus: EventBus,
                 clock: ManualClock) -> Trader:
    """The live trader for a replay: the local panel without the ML voter (see ``backtest_consensus``); with
    ``LEARNED_WEIGHTS=true`` it keeps the live vote book (in the replay's SQLite) and weighs the panel by it."""
    return build_trader(settings, mode=Mode.PAPER, exchange=exchange, repos=repos, bus=bus, clock=clock,
                        consensus=backtest_consensus(settings), record_votes=settings.learned_weights)


def backtest_consensus(settings: Settings) -> Consensus:
    """The panel a plain backtest (and the demo) runs: ``VOTERS`` and the gates, never the ML voter. A model file
    was trained on some history, maybe this one: a backtest that used it would judge the model on the data it
    learnt from. ``backtest --walk-forward`` is how the ML voter is backtested (retrained on the past per fold)."""
    return build_consensus(settings, ml=False)


async def replay(settings: Settings, options: DemoOptions, *, extra_sinks: list[object] | None = None
                 ) -> BacktestSummary:
    return await run_backtest(settings, options, make_trader=paper_trader, extra_sinks=extra_sinks)


async def run_demo(settings: Settings, options: DemoOptions) -> int:
    summary = await replay(settings, options)
    print(summary.render())
    return 0


# ------------------------------------------------------------------------------------------- fast engine
def fast_config(settings: Settings, *, operator_reset_after: timedelta | None = None,
                strategy: str = "default") -> FastConfig:
    """The fast engine's configuration, from the same Settings mapping as the live trader's."""
    return FastConfig(
        risk=risk_config(settings), limits=limits_config(settings), exits=exit_config(settings),
        adaptive=adaptive_config(settings), breakers=breaker_config(settings),
        margin_type=MarginType(settings.margin_type), start_balance=settings.paper_start_balance,
        taker_fee=settings.paper_taker_fee, slippage_pct=settings.paper_slippage_pct,
        default_leverage=settings.leverage, scan_every=max(1, settings.scan_interval_seconds // 300),
        operator_reset_after=operator_reset_after, strategy=strategy)


SignalsFactory = Callable[[Settings, HistoricalMarket, list[str], datetime, datetime],
                          Mapping[str, SymbolSignals]]


def reference_signals(settings: Settings, market: HistoricalMarket, symbols: list[str], start: datetime,
                      end: datetime) -> Mapping[str, SymbolSignals]:
    """The slow, exact signal tables: the live scan run at every scan time (``engine.backtest.reference``). They do
    not model ``LEARNED_WEIGHTS=true`` (the vectorised tables and the replay do)."""
    if settings.learned_weights:
        raise ValueError("LEARNED_WEIGHTS=true is modelled by the vectorised signal tables and the replay, not by "
                         "the reference tables; set LEARNED_WEIGHTS=false or use the vectorised tables")
    clock = ManualClock(start)
    scan_market = HistoricalMarket(market.data_dir, clock, symbols, rules=market.rules)
    service = build_market_service(settings, scan_market, clock)
    times = scan_times(start, end, max(1, settings.scan_interval_seconds // 300), SCAN_DELAY)
    open_times = {s: market.history(s)[0] for s in symbols}
    return build_reference_signals(service, clock, backtest_consensus(settings), open_times, times,
                                   stop_timeframe=settings.stop_atr_timeframe)


def vectorised_signals(settings: Settings, market: HistoricalMarket, symbols: list[str], start: datetime,
                       end: datetime) -> Mapping[str, SymbolSignals]:
    """The signal tables computed once, vectorised and causal, over each symbol's whole history
    (``strategies.signal_table``; the signal parity test pins them to the live scan)."""
    from strategies.signal_table import SignalConfig, build_signal_tables

    histories = {s: market.base_klines(s) for s in symbols}
    consensus = backtest_consensus(settings)
    tables = build_signal_tables(histories, consensus, SignalConfig.from_settings(settings),
                                 keep_votes=settings.learned_weights)
    for symbol, table in tables.items():   # the engine indexes a table like the market's 5m candles
        if not np.array_equal(table.open_ms, market.history(symbol)[0]):
            raise ValueError(f"{symbol}: the signal table's candles differ from the market's; cannot align them")
    if settings.learned_weights:
        return learned_tables(settings, tables, histories, symbols, start, end, consensus).tables
    return tables


def learned_tables(settings: Settings, tables: Mapping[str, SymbolSignals], histories: Mapping[str, KlineBatch],
                   symbols: list[str], start: datetime, end: datetime, consensus: Consensus) -> LearnedRun:
    """``LEARNED_WEIGHTS=true`` for the fast engine: the live vote book replayed over its scans from ``start`` (an
    empty book, as a replay or a fresh bot) to ``end`` (``engine.backtest.learned_weights``)."""
    every = max(1, settings.scan_interval_seconds // 300)
    times = fast_scan_times(int(start.timestamp() * 1000), int(end.timestamp() * 1000), every,
                            int(SCAN_DELAY.total_seconds() * 1000))
    return learn_over_scans(tables, histories, symbols, times, consensus, vote_log_config(settings))


def run_fast_backtest(settings: Settings, data_dir: Path, symbols: list[str], start: datetime, end: datetime, *,
                      signals: SignalsFactory = vectorised_signals, operator_reset_after: timedelta | None = None,
                      exchange_info: Path | None = None, close_at_end: bool = True) -> BacktestResult:
    """The fast engine over ``[start, end)`` (``end`` exclusive) on the data in ``data_dir``."""
    market = HistoricalMarket(data_dir, ManualClock(start), symbols, exchange_info=exchange_info)
    chosen = market.symbols
    if not chosen:
        raise FileNotFoundError(f"none of {', '.join(symbols)} has data and rules in {data_dir}")
    settings = settings.model_copy(update={"symbols": chosen, "universe_size": len(chosen)})
    data = {s: SymbolData(s, *market.history(s)) for s in chosen}
    tables = signals(settings, market, chosen, start, end)
    return run_engine(fast_config(settings, operator_reset_after=operator_reset_after), market.rules, data, tables,
                      chosen, start, end, close_at_end=close_at_end)
