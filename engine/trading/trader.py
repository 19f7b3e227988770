"""The trader: the scan job (find and open protected positions) and the monitor job (breakers, reconcile,
exits, equity). The same code runs in paper, live and backtest; it only sees the ``Exchange`` protocol.
Orders go through ``engine.trading.order_desk``, recovery through ``engine.trading.reconciler``, exits through
``engine.trading.exit_manager``; the trader decides and sequences them under one lock.

Invariants held (DESIGN.md):
1. protected at all times — the stop is placed right after the entry fills; if it cannot be, the position
   is closed at market and the operator alerted; a missing stop is re-placed on every monitor tick;
2. intent before action — every order row (deterministic client id) is written before the request;
   an unknown outcome is resolved by querying that id, never by sending again;
3. the exchange is the truth for positions — ``reconcile()`` adopts unknown positions and books the real
   exit of positions that disappeared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from core.clock import Clock
from core.enums import ExitReason
from engine.events import EventBus, Level, ScanCompleted, TradeClosed
from engine.exchange.protocol import Exchange
from engine.exchange.types import Balance, LeverageBracket, MarginType, Position, PositionSide
from engine.market import MarketDataService
from engine.policy.adaptive import AdaptiveConfig, TradeOutcome, adaptive_levels, regime_of
from engine.policy.exits import ExitConfig
from engine.policy.risk import LimitsConfig, OpenPosition, RiskConfig, entry_limits_block, plan_entry
from engine.trading.breakers import AccountSnapshot, BreakerConfig, Breakers
from engine.trading.exit_manager import ExitManager
from engine.trading.halts import HaltState, load_halts
from engine.trading.order_desk import OrderDesk
from engine.trading.reconciler import Reconciler, ReconcileReport
from engine.trading.trade_memory import TradeMemory
from storage.records import OrderPurpose, TradeRecord
from storage.repositories import Repositories
from strategies.consensus import Consensus
from strategies.llm import LlmPanel
from strategies.scanner import ScanMemo, ScanResult, evaluate_snapshot
from strategies.types import Direction, Signal

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "monitor_heartbeat"
LAST_SCAN_KEY = "last_scan"

_NO_BREAKERS = BreakerConfig(daily_loss_pct=Decimal(0), max_drawdown_pct=Decimal(0), max_consecutive_losses=0,
                             volatility_ratio=0.0, api_errors_max=0, symbol_cooldown=timedelta(0),
                             symbol_daily_loss_pct=Decimal(0))


@dataclass(frozen=True, slots=True)
class TraderConfig:
    mode: str
    risk: RiskConfig
    margin_type: MarginType
    max_open_positions: int
    stop_timeframe: str | None = None
    equity_snapshot_every: timedelta = timedelta(minutes=5)
    limits: LimitsConfig | None = None
    exits: ExitConfig | None = None
    adaptive: AdaptiveConfig = field(default_factory=lambda: AdaptiveConfig(enabled=False))

    @property
    def position_limits(self) -> LimitsConfig:
        return self.limits or LimitsConfig(max_open_positions=self.max_open_positions)


@dataclass(slots=True)
class ScanReport:
    symbols: int = 0
    signals: list[Signal] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    halted: str = ""


class Trader:
    def __init__(self, *, exchange: Exchange, market: MarketDataService, consensus: Consensus,
                 repos: Repositories, bus: EventBus, clock: Clock, config: TraderConfig,
                 breakers: Breakers | None = None, llm: LlmPanel | None = None) -> None:
        self.exchange = exchange
        self.market = market
        self.consensus = consensus
        self.llm = llm
        self.repos = repos
        self.bus = bus
        self.clock = clock
        self.config = config
        self.mode = config.mode
        # breakers with every threshold at 0 never trip: the default for callers that do not configure them
        self.breakers = breakers or Breakers(repos.state, _NO_BREAKERS, key_prefix=f"breaker:{config.mode}:")
        self.memory = TradeMemory(repos.state, config.mode)
        self.desk = OrderDesk(exchange=exchange, repos=repos, bus=bus, clock=clock, mode=config.mode,
                              memory=self.memory)
        self.desk.on_trade_closed = self._on_trade_closed
        self.reconciler = Reconciler(self.desk, config.risk)
        self.exits = ExitManager(self.desk, config.exits) if config.exits is not None else None
        self._leverage_set: dict[str, int] = {}
        self._margin_set: set[str] = set()
        self._scan_result = ScanResult()
        self._scan_memo = ScanMemo()  # features and contexts of candle batches unchanged since the last scan
        self._lock = asyncio.Lock()
        self._retired = False
        self._last_equity_at: datetime | None = None
        self.last_scan: ScanReport | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> ReconcileReport:
        await self.desk.start()
        return await self.reconcile()

    def reconfigure(self, config: TraderConfig) -> None:
        """New risk/exit settings (operator /set); leverage is re-applied per symbol on its next entry."""
        self.config = config
        self.reconciler.risk = config.risk
        self.exits = ExitManager(self.desk, config.exits) if config.exits is not None else None
        self._leverage_set.clear()

    async def retire(self) -> None:
        """This trader is being replaced (mode switch): wait for its job in flight, then never act again."""
        async with self._lock:
            self._retired = True

    def reinstate(self) -> None:
        self._retired = False

    def client_id(self, trade_id: int, purpose: OrderPurpose, attempt: int) -> str:
        return self.desk.client_id(trade_id, purpose, attempt)

    async def halts(self) -> HaltState:
        return await load_halts(self.repos.state)

    # ------------------------------------------------------------------ scan
    async def scan(self) -> ScanReport:
        started_cpu = time.process_time()
        report = ScanReport()
        halts = await self.halts()
        universe = await self.market.universe()
        report.symbols = len(universe)
        snapshot = await self.market.snapshot(universe)
        report.rejected = dict(snapshot.rejected)
        result = evaluate_snapshot(snapshot, self.consensus, stop_timeframe=self.config.stop_timeframe,
                                   memo=self._scan_memo)
        blocked = halts.describe() if not halts.entries_allowed else await self.breakers.entries_blocked(
            None, self.clock.now())
        if not blocked and self.llm:  # paid, slow voters: only about the best local candidates, only when it can act
            answers = await self.llm.ask(result.candidates(self.llm.top_n))
            result = result.with_votes(self.consensus, answers.votes)
        self._scan_result = result  # the monitor's signal exits and volatility breaker read it
        report.signals = result.ranked
        if blocked:
            report.halted = blocked if not halts.entries_allowed else f"breaker: {blocked}"
        if blocked or not report.signals:
            await self._finish_scan(report, started_cpu)
            return report
        async with self._lock:
            # the snapshot took time: a /pause, /stop, /kill or mode switch may have happened meanwhile
            if self._retired or not (halts := await self.halts()).entries_allowed:
                report.halted = "retired" if self._retired else halts.describe()
                await self._finish_scan(report, started_cpu)
                return report
            positions = await self.exchange.positions()
            open_positions = [OpenPosition.of(p, self._brackets(p.symbol)) for p in positions]
            busy = {t.symbol for t in await self.repos.trades.active(self.mode)} | {p.symbol for p in positions}
            for signal in report.signals:
                if not (await self.halts()).entries_allowed:
                    report.skipped[signal.symbol] = "halted during the scan"
                    continue
                if signal.symbol in busy:
                    report.skipped[signal.symbol] = "already in a position"
                    continue
                reason = await self.breakers.entries_blocked(signal.symbol, self.clock.now())
                if reason:
                    report.skipped[signal.symbol] = f"breaker: {reason}"
                    continue
                trade = await self._open_trade(signal, result, open_positions, report)
                if trade is not None:
                    report.opened.append(trade.id)
                    busy.add(signal.symbol)
                    open_positions.append(OpenPosition(
                        trade.symbol, PositionSide(trade.side), trade.quantity * (trade.entry_price or Decimal(0)),
                        brackets=self._brackets(trade.symbol)))
        await self._finish_scan(report, started_cpu)
        return report

    def _brackets(self, symbol: str) -> tuple[LeverageBracket, ...]:
        rules = self.desk.rules.get(symbol)
        return rules.brackets if rules else ()

    async def _finish_scan(self, report: ScanReport, started_cpu: float) -> None:
        now = self.clock.now()
        self.last_scan = report
        await self.repos.state.set(LAST_SCAN_KEY, {"time": now.isoformat(), "symbols": report.symbols,
                                                   "signals": len(report.signals), "opened": len(report.opened),
                                                   "halted": report.halted}, now)
        for symbol, reason in report.skipped.items():
            if reason != "already in a position":
                await self.repos.events.append(time=now, kind="EntrySkipped",
                                               payload={"symbol": symbol, "reason": reason})
        await self.bus.publish(ScanCompleted(
            time=now, symbols=report.symbols, signals=len(report.signals), opened=len(report.opened),
            cpu_ms=(time.process_time() - started_cpu) * 1000, skipped_reason=report.halted))

    async def _open_trade(self, signal: Signal, result: ScanResult, open_positions: list[OpenPosition],
                          report: ScanReport) -> TradeRecord | None:
        rules = self.desk.rules.get(signal.symbol)
        if rules is None or not rules.is_tradable:
            report.skipped[signal.symbol] = "symbol not tradable"
            return None
        side = PositionSide.LONG if signal.direction is Direction.LONG else PositionSide.SHORT
        mark = await self.exchange.mark_price(signal.symbol)
        balance = await self.exchange.balance()
        now = self.clock.now()
        limit = entry_limits_block(
            symbol=signal.symbol, side=side, equity=balance.equity, open_positions=open_positions,
            cfg=self.config.position_limits, now=now,
            returns=result.returns([signal.symbol, *(p.symbol for p in open_positions)]),
            funding_rate=mark.funding_rate, next_funding_time=mark.next_funding_time)
        if limit:
            report.skipped[signal.symbol] = limit
            return None
        atr = Decimal(repr(signal.atr))
        context = result.context(signal.symbol)
        regime = regime_of(context.adx, context.atr_ratio) if context else ""
        outcomes = await self.memory.outcomes()
        levels = adaptive_levels(outcomes, symbol=signal.symbol, regime=regime, hour=now.hour,
                                 base_k=self.config.risk.stop_atr_mult, base_m=self.config.risk.take_profit_atr_mult,
                                 cfg=self.config.adaptive)
        plan = plan_entry(
            rules=rules, side=side, price=mark.mark_price, atr=atr, equity=balance.equity,
            available=balance.available_balance, cfg=self.config.risk, open_positions=open_positions,
            margin_type=self.config.margin_type, wallet_balance=balance.wallet_balance,
            atr_pct_history=context.atr_pct_history if context else (),
            trade_r_multiples=[o.r_multiple for o in outcomes if o.symbol == signal.symbol],
            stop_mult=levels.stop_mult, tp_mult=levels.tp_mult, size_mult=levels.size_mult)
        if not plan.ok:
            report.skipped[signal.symbol] = plan.reason
            return None
        leverage = plan.leverage or self.config.risk.leverage
        await self._ensure_symbol_setup(signal.symbol, leverage)
        trade = await self.repos.trades.create(
            mode=self.mode, symbol=signal.symbol, side=side.value, quantity=plan.quantity,
            stop_price=plan.stop_price, take_profit_price=plan.take_profit_price, leverage=leverage,
            score=signal.score, votes=[f"{v.voter}:{v.direction.name}:{v.confidence:.2f}" for v in signal.votes],
            now=now, entry_price=plan.reference_price)
        order = await self.desk.market_order(trade, OrderPurpose.ENTRY, side.entry_side, plan.quantity,
                                             reduce_only=False)
        if order is None:
            report.skipped[signal.symbol] = "entry outcome unknown; will be resolved by reconciliation"
            return None
        if order.filled_quantity <= 0:
            await self.repos.trades.mark_failed(trade.id, f"entry {order.status.value}", self.clock.now())
            report.skipped[signal.symbol] = f"entry {order.status.value}"
            return None
        # a partly filled entry (EXPIRED / PARTIALLY_FILLED with executed quantity) is a real position: protect it
        await self.memory.save_entry_context(trade.id, atr=atr, regime=regime, now=self.clock.now())
        return await self.desk.open_protected(trade, order, lambda fill: plan.prices_at(rules, fill), signal.score)

    async def _ensure_symbol_setup(self, symbol: str, leverage: int) -> None:
        if symbol not in self._margin_set:
            await self.exchange.set_margin_type(symbol, self.config.margin_type)
            self._margin_set.add(symbol)
        if self._leverage_set.get(symbol) != leverage:
            await self.exchange.set_leverage(symbol, leverage)
            self._leverage_set[symbol] = leverage

    # ------------------------------------------------------------------ closes
    async def close_symbol(self, symbol: str, reason: str) -> TradeRecord | None:
        """Close the active trade on ``symbol`` at market (operator command, kill-switch)."""
        async with self._lock:
            for trade in await self.repos.trades.active(self.mode):
                if trade.symbol == symbol:
                    return await self.desk.exit(trade, reason)
        return None

    async def close_all(self, reason: str) -> list[TradeRecord]:
        closed: list[TradeRecord] = []
        async with self._lock:
            for trade in await self.repos.trades.active(self.mode):
                result = await self.desk.exit(trade, reason)
                if result is not None:
                    closed.append(result)
        return closed

    async def _on_trade_closed(self, trade: TradeRecord, event: TradeClosed) -> None:
        """Every booked close: remember its outcome for adaptive sizing, feed the breakers."""
        await self._learn_from(trade)
        for breaker_event in await self.breakers.record_trade_closed(event, self.clock.now()):
            await self.bus.publish(breaker_event)

    async def _learn_from(self, trade: TradeRecord) -> None:
        """Store the closed trade's outcome (R multiple, excursions in ATR) for adaptive stops and Kelly."""
        state = await self.memory.exit_state(trade.id)
        context = await self.memory.entry_context(trade.id)
        if trade.entry_price is not None and trade.opened_at is not None and trade.exit_price is not None:
            risk = abs(trade.entry_price - trade.initial_stop_price)
            atr = Decimal(context.get("atr", "0")) or risk / self.config.risk.stop_atr_mult
            outcome = TradeOutcome.from_prices(
                symbol=trade.symbol, side=PositionSide(trade.side), entry=trade.entry_price,
                exit_price=trade.exit_price, initial_stop=trade.initial_stop_price, atr=atr,
                best=state.best_price if state else max(trade.entry_price, trade.exit_price),
                worst=state.worst_price if state else min(trade.entry_price, trade.exit_price),
                opened_at=trade.opened_at, regime=context.get("regime", ""), net_pnl=trade.net_pnl,
                quantity=trade.initial_quantity)
            await self.memory.add_outcome(outcome, self.clock.now())
        await self.memory.forget(trade.id)

    # ------------------------------------------------------------------ monitor
    async def monitor(self) -> ReconcileReport:
        """Breakers, reconciliation, exits, equity, heartbeat. When stopped only breakers, equity and the
        heartbeat run: no orders are sent or cancelled."""
        halts = await self.halts()
        report = ReconcileReport()
        balance = await self.exchange.balance()
        for event in await self.breakers.evaluate(AccountSnapshot(balance.equity, self._btc_atr_ratio()),
                                                  self.clock.now()):
            await self.bus.publish(event)
        if not halts.stopped:
            if (reason := await self.breakers.close_all_request()) is not None:
                await self.desk.alert(Level.CRITICAL, f"closing every position: {reason}")
                await self.close_all(ExitReason.BREAKER_CLOSE_ALL)
                if not await self.repos.trades.active(self.mode):  # else retried on the next tick
                    await self.breakers.close_all_done(self.clock.now())
            report = await self.reconcile()
            await self.manage_exits(report.positions)
        await self._snapshot_equity(balance)
        now = self.clock.now()
        await self.repos.state.set(HEARTBEAT_KEY, now.isoformat(), now)
        return report

    def _btc_atr_ratio(self) -> float | None:
        context = self._scan_result.context("BTCUSDT")
        return context.atr_ratio if context else None

    async def reconcile(self) -> ReconcileReport:
        """Make the books agree with the exchange (invariant 3) and every position protected (invariant 1)."""
        async with self._lock:
            return await self.reconciler.run()

    async def manage_exits(self, positions: dict[str, Position] | None = None) -> None:
        """Trailing stops, partial exits, time/stale/signal exits for every open trade. ``positions`` as
        reconciliation just read them (saves a request), else fetched."""
        if self.exits is None:
            return
        async with self._lock:
            if positions is None:
                positions = {p.symbol: p for p in await self.exchange.positions()}
            await self.exits.manage(await self.repos.trades.active(self.mode), positions, self._scan_result.signals)

    async def _snapshot_equity(self, balance: Balance) -> None:
        now = self.clock.now()
        if self._last_equity_at is not None and now - self._last_equity_at < self.config.equity_snapshot_every:
            return
        await self.repos.equity.record(mode=self.mode, time=now, wallet=balance.wallet_balance,
                                       equity=balance.equity, unrealized=balance.unrealized_pnl)
        self._last_equity_at = now
