"""Replays recorded market data through the SAME trader code with a simulated clock and the paper exchange.

The historical feed has 5-minute resolution, so the simulated clock steps one candle at a time: at each
candle close (+ a few seconds) the monitor runs (reconciliation, protection, equity) and, on the scan
interval, the scan. The paper exchange triggers stops and take-profits on each candle's range and charges
funding at the recorded funding times. ``main.py demo`` is this module with the bundled sample.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from core.clock import ManualClock, to_ms
from core.enums import PositionSide
from engine.backtest.results import BacktestResult, HaltNotice, TradeResult
from engine.console import ConsoleSink
from engine.events import BreakerTripped, Event, EventBus, RecordingSink
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.types import MarginType
from engine.trading.breakers import DRAWDOWN
from engine.trading.trader import Trader
from settings import Settings
from storage.records import EquityPoint, TradeRecord
from storage.repositories import Repositories
from storage.scratch_db import ScratchDatabase

STEP = timedelta(minutes=5)

# builds the live trader over the given paper exchange (the composition root supplies it: ``app.backtest``)
TraderFactory = Callable[[Settings, PaperExchange, Repositories, EventBus, ManualClock], Trader]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    data_dir: Path
    symbols: list[str]
    start: datetime
    days: int
    quiet: bool = False
    db_path: Path | None = None
    exchange_info: Path | None = None
    scan_delay: timedelta = timedelta(seconds=5)
    #: simulate an operator who resets the drawdown breaker this long after it trips (None: nobody does)
    operator_reset_after: timedelta | None = None
    #: called after each simulated 5m step with (steps done, steps total)
    progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True, slots=True)
class BacktestSummary:
    start: datetime
    end: datetime
    symbols: tuple[str, ...]
    trades: tuple[TradeRecord, ...]
    open_trades: int
    start_equity: Decimal
    end_equity: Decimal
    fees: Decimal
    funding: Decimal
    max_drawdown_pct: Decimal
    scans: int
    wall_seconds: float
    exit_reasons: dict[str, int] = field(default_factory=dict)
    equity_curve: tuple[EquityPoint, ...] = ()
    halts: tuple[HaltNotice, ...] = ()

    @property
    def wins(self) -> int:
        return sum(1 for t in self.trades if t.net_pnl > 0)

    @property
    def win_rate_pct(self) -> Decimal:
        return Decimal(self.wins * 100) / len(self.trades) if self.trades else Decimal(0)

    @property
    def net_pnl(self) -> Decimal:
        return sum((t.net_pnl for t in self.trades), Decimal(0))

    def render(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.exit_reasons.items())) or "none"
        return "\n".join([
            "",
            "=== Vigil demo summary (real Binance USD-M data, simulated paper account) ===",
            f"period            {self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC",
            f"symbols           {', '.join(self.symbols)}",
            f"scans             {self.scans}",
            f"trades closed     {len(self.trades)} (still open at the end: {self.open_trades})",
            f"win rate          {self.win_rate_pct:.1f} % ({self.wins} winners)",
            f"exit reasons      {reasons}",
            f"net P&L           {self.net_pnl:+.2f} USDT (after fees and funding)",
            f"fees paid         {self.fees:.2f} USDT",
            f"funding           {self.funding:+.2f} USDT",
            f"equity            {self.start_equity:.2f} → {self.end_equity:.2f} USDT",
            f"max drawdown      {self.max_drawdown_pct:.2f} % of peak equity",
            f"wall time         {self.wall_seconds:.1f} s",
        ])


async def run_backtest(settings: Settings, options: DemoOptions, *, make_trader: TraderFactory,
                       extra_sinks: list[object] | None = None) -> BacktestSummary:
    wall_start = time.perf_counter()
    clock = ManualClock(options.start)
    market = HistoricalMarket(options.data_dir, clock, options.symbols, exchange_info=options.exchange_info)
    symbols = market.symbols
    if not symbols:
        raise FileNotFoundError(f"none of {', '.join(options.symbols)} has data and rules in {options.data_dir}")
    last_ms = min(int(market.data_range(s)[1].timestamp()) for s in symbols)
    end = min(options.start + timedelta(days=options.days), datetime.fromtimestamp(last_ms, tz=options.start.tzinfo))
    settings = settings.model_copy(update={"symbols": symbols, "universe_size": len(symbols)})
    with tempfile.TemporaryDirectory(prefix="vigil-demo-") as tmp:
        db_path = options.db_path or Path(tmp) / "demo.sqlite3"
        if db_path.exists():
            raise FileExistsError(f"{db_path} already exists; the demo never reuses a database")
        db = await ScratchDatabase(db_path).open()
        exchange: PaperExchange | None = None
        try:
            repos = Repositories(db)
            bus = EventBus()
            recorder = RecordingSink()
            bus.subscribe(recorder)
            if not options.quiet:
                bus.subscribe(ConsoleSink())
            for sink in extra_sinks or []:
                bus.subscribe(sink)  # type: ignore[arg-type]
            exchange = PaperExchange(
                db, market, clock, start_balance=settings.paper_start_balance, taker_fee=settings.paper_taker_fee,
                maker_fee=settings.paper_maker_fee, slippage_pct=settings.paper_slippage_pct,
                trigger_interval="5m", default_leverage=settings.leverage,
                default_margin_type=MarginType(settings.margin_type))
            await exchange.open()
            start_equity = (await exchange.balance()).equity
            trader = make_trader(settings, exchange, repos, bus, clock)
            halts = _HaltWatcher()
            bus.subscribe(halts)
            await trader.start()
            scans = await _replay(trader, clock, options, end, settings.scan_interval_seconds, halts)
            end_equity = (await exchange.balance()).equity
            closed = tuple(reversed(await repos.trades.closed("paper")))
            open_count = len(await repos.trades.active("paper"))
            points = tuple(await repos.equity.series("paper"))
            curve = [p.equity for p in points]
            reasons: dict[str, int] = {}
            for t in closed:
                reasons[t.exit_reason or "?"] = reasons.get(t.exit_reason or "?", 0) + 1
            return BacktestSummary(
                start=options.start, end=clock.now(), symbols=tuple(symbols), trades=closed, open_trades=open_count,
                start_equity=start_equity, end_equity=end_equity,
                fees=await repos.ledger.total_fees("paper"), funding=await repos.ledger.total_funding("paper"),
                max_drawdown_pct=max_drawdown_pct(curve), scans=scans,
                wall_seconds=time.perf_counter() - wall_start, exit_reasons=reasons, equity_curve=points,
                halts=tuple(halts.notices))
        finally:
            if exchange is not None:
                await exchange.close()
            await db.close()


class _HaltWatcher:
    """Remembers when the drawdown breaker (which only the operator resets) halted entries."""

    def __init__(self) -> None:
        self.notices: list[HaltNotice] = []
        self.pending: HaltNotice | None = None

    async def handle(self, event: Event) -> None:
        if isinstance(event, BreakerTripped) and event.breaker == DRAWDOWN and self.pending is None:
            self.pending = HaltNotice(event.time, f"{event.breaker} breaker: {event.reason}")
            self.notices.append(self.pending)

    async def maybe_reset(self, trader: Trader, now: datetime, after: timedelta | None) -> None:
        if self.pending is None or after is None or now < self.pending.time + after:
            return
        await trader.breakers.reset(DRAWDOWN, by_operator=True, now=now)
        self.notices[-1] = HaltNotice(self.pending.time, self.pending.reason, now)
        self.pending = None


async def _replay(trader: Trader, clock: ManualClock, options: DemoOptions, end: datetime,
                  scan_interval_seconds: int, halts: _HaltWatcher | None = None) -> int:
    scan_every = max(1, scan_interval_seconds // int(STEP.total_seconds()))
    step_index = 0
    scans = 0
    total = max(1, int((end - options.scan_delay - options.start) / STEP) + 1)
    t = options.start
    while t + options.scan_delay <= end:
        clock.set(t + options.scan_delay)
        if halts is not None:
            await halts.maybe_reset(trader, clock.now(), options.operator_reset_after)
        await trader.monitor()
        if step_index % scan_every == 0:
            await trader.scan()
            scans += 1
        step_index += 1
        t += STEP
        if options.progress is not None:
            options.progress(step_index, total)
    return scans


def to_result(summary: BacktestSummary, *, candles: int, strategy: str = "default") -> BacktestResult:
    """The replay's summary as the engine-neutral ``BacktestResult`` (equity curve from the monitor's points)."""
    trades = tuple(sorted((trade_result(t) for t in summary.trades if t.entry_price is not None),
                          key=lambda t: (t.opened_at, t.symbol)))
    times = np.array([to_ms(p.time) for p in summary.equity_curve], dtype=np.int64)
    equity = np.array([float(p.equity) for p in summary.equity_curve], dtype=np.float64)
    return BacktestResult(
        strategy=strategy, engine="replay", symbols=summary.symbols, start=summary.start, end=summary.end,
        start_equity=summary.start_equity, end_equity=summary.end_equity, trades=trades, equity_ms=times,
        equity=equity, candles=candles, open_at_end=summary.open_trades, halts=summary.halts,
        wall_seconds=summary.wall_seconds)


def trade_result(trade: TradeRecord) -> TradeResult:
    """A closed trade of the replay as both engines report it."""
    entry = trade.entry_price or Decimal(0)
    return TradeResult(
        symbol=trade.symbol, side=PositionSide(trade.side), opened_at=trade.opened_at or trade.created_at,
        closed_at=trade.closed_at or trade.created_at, entry_price=entry, exit_price=trade.exit_price or entry,
        quantity=trade.initial_quantity, exit_reason=str(trade.exit_reason or ""), net_pnl=trade.net_pnl,
        fees=trade.fees, funding=trade.funding, risk=abs(entry - trade.initial_stop_price) * trade.initial_quantity)


def max_drawdown_pct(curve: list[Decimal]) -> Decimal:
    peak = Decimal(0)
    worst = Decimal(0)
    for value in curve:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak * 100)
    return worst
