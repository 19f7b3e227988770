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

from core.clock import ManualClock
from core.enums import PositionSide
from engine.backtest.results import TradeResult
from engine.console import ConsoleSink
from engine.events import EventBus, RecordingSink
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.types import MarginType
from engine.trading.trader import Trader
from settings import Settings
from storage.db import Database
from storage.records import TradeRecord
from storage.repositories import Repositories

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
    scan_delay: timedelta = timedelta(seconds=5)


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
    market = HistoricalMarket(options.data_dir, clock, options.symbols)
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
        db = await Database(db_path).open()
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
            await trader.start()
            scans = await _replay(trader, clock, options, end, settings.scan_interval_seconds)
            end_equity = (await exchange.balance()).equity
            closed = tuple(reversed(await repos.trades.closed("paper")))
            open_count = len(await repos.trades.active("paper"))
            curve = [p.equity for p in await repos.equity.series("paper")]
            reasons: dict[str, int] = {}
            for t in closed:
                reasons[t.exit_reason or "?"] = reasons.get(t.exit_reason or "?", 0) + 1
            return BacktestSummary(
                start=options.start, end=clock.now(), symbols=tuple(symbols), trades=closed, open_trades=open_count,
                start_equity=start_equity, end_equity=end_equity,
                fees=await repos.ledger.total_fees("paper"), funding=await repos.ledger.total_funding("paper"),
                max_drawdown_pct=max_drawdown_pct(curve), scans=scans,
                wall_seconds=time.perf_counter() - wall_start, exit_reasons=reasons)
        finally:
            if exchange is not None:
                await exchange.close()
            await db.close()


async def _replay(trader: Trader, clock: ManualClock, options: DemoOptions, end: datetime,
                  scan_interval_seconds: int) -> int:
    scan_every = max(1, scan_interval_seconds // int(STEP.total_seconds()))
    step_index = 0
    scans = 0
    t = options.start
    while t + options.scan_delay <= end:
        clock.set(t + options.scan_delay)
        await trader.monitor()
        if step_index % scan_every == 0:
            await trader.scan()
            scans += 1
        step_index += 1
        t += STEP
    return scans


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
