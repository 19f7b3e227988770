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
from core.enums import ExitReason, Mode
from engine.blacklist import load_blacklist
from engine.events import EventBus, Level, ScanCompleted, TradeClosed
from engine.exchange.errors import ExchangeError
from engine.exchange.protocol import Exchange
from engine.exchange.types import Balance, LeverageBracket, MarginType, Position, PositionSide, SymbolRules
from engine.market import MarketDataService
from engine.policy.adaptive import AdaptiveConfig
from engine.policy.booking import closed_outcome
from engine.policy.entry import MarketContext, decide_entry
from engine.policy.exits import ExitConfig
from engine.policy.risk import EntryPlan, LimitsConfig, OpenPosition, RiskConfig
from engine.retrying import Sleep
from engine.trading.breakers import AccountSnapshot, BreakerConfig, Breakers
from engine.trading.exit_manager import ExitManager
from engine.trading.halts import HaltState, load_halts
from engine.trading.order_desk import OrderDesk
from engine.trading.reconciler import Reconciler, ReconcileReport
from engine.trading.trade_memory import TradeMemory
from engine.trading.vote_log import VoteLog
from storage.records import OrderPurpose, TradeRecord, TradeStatus
from storage.repositories import Repositories
from strategies.consensus import Consensus
from strategies.llm import LlmPanel
from strategies.scanner import ScanMemo, ScanResult, SymbolContext, evaluate_snapshot
from strategies.types import Direction, Signal

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "monitor_heartbeat"
LAST_SCAN_KEY = "last_scan"

_NO_BREAKERS = BreakerConfig(daily_loss_pct=Decimal(0), max_drawdown_pct=Decimal(0), max_consecutive_losses=0,
                             volatility_ratio=0.0, api_errors_max=0, symbol_cooldown=timedelta(0),
                             symbol_daily_loss_pct=Decimal(0))


@dataclass(frozen=True, slots=True)
class TraderConfig:
    mode: Mode
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


MANUAL_VOTE = "operator:manual"


class EntryRefused(Exception):
    """A manual entry was not opened; ``str(exc)`` says why."""


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """One entry to plan: from a scan signal, or from the operator (/long, /short)."""

    symbol: str
    side: PositionSide
    atr: float            # on the stop timeframe
    score: float
    votes: tuple[str, ...]


@dataclass(slots=True)
class ScanReport:
    symbols: int = 0
    signals: list[Signal] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    opened_symbols: dict[str, int] = field(default_factory=dict)  # symbol → trade id
    skipped: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    halted: str = ""


@dataclass(slots=True)
class FlattenReport:
    closed: list[TradeRecord] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol → what could not be done


class Trader:
    def __init__(self, *, exchange: Exchange, market: MarketDataService, consensus: Consensus,
                 repos: Repositories, bus: EventBus, clock: Clock, config: TraderConfig,
                 breakers: Breakers | None = None, llm: LlmPanel | None = None, sleep: Sleep | None = None,
                 vote_log: VoteLog | None = None) -> None:
        self.exchange = exchange
        self.market = market
        self.consensus = consensus
        self.llm = llm
        self.vote_log = vote_log  # records every scan's votes and resolves their outcomes (None: not recorded)
        self.repos = repos
        self.bus = bus
        self.clock = clock
        self.config = config
        self.mode = config.mode
        # breakers with every threshold at 0 never trip: the default for callers that do not configure them
        self.breakers = breakers or Breakers(repos.state, _NO_BREAKERS, key_prefix=f"breaker:{config.mode}:")
        self.memory = TradeMemory(repos.state, config.mode)
        self.desk = OrderDesk(exchange=exchange, repos=repos, bus=bus, clock=clock, mode=config.mode,
                              memory=self.memory, sleep=sleep)
        self.desk.on_trade_closed = self._on_trade_closed
        self.reconciler = Reconciler(self.desk, config.risk)
        self.exits = ExitManager(self.desk, config.exits) if config.exits is not None else None
        self._leverage_set: dict[str, int] = {}
        self._margin_set: set[str] = set()
        self._scan_result = ScanResult()
        self._scan_memo = ScanMemo()  # features and contexts of candle batches unchanged since the last scan
        self._btc_ratio: tuple[SymbolContext, float | None] | None = None  # the last context read and its ratio
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

    def knows_symbol(self, symbol: str) -> bool:
        return symbol in self.desk.rules

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
            open_positions, busy = await self._book()
            blacklist = await load_blacklist(self.repos.state)
            for signal in report.signals:
                if not (await self.halts()).entries_allowed:
                    report.skipped[signal.symbol] = "halted during the scan"
                    continue
                if signal.symbol in busy:
                    report.skipped[signal.symbol] = "already in a position"
                    continue
                if signal.symbol in blacklist:
                    report.skipped[signal.symbol] = "blacklisted by the operator"
                    continue
                reason = await self.breakers.entries_blocked(signal.symbol, self.clock.now())
                if reason:
                    report.skipped[signal.symbol] = f"breaker: {reason}"
                    continue
                side = PositionSide.LONG if signal.direction is Direction.LONG else PositionSide.SHORT
                votes = tuple(v.describe() for v in signal.votes)
                outcome = await self._enter(EntryRequest(signal.symbol, side, signal.atr, signal.score, votes),
                                            result, open_positions)
                if isinstance(outcome, str):
                    report.skipped[signal.symbol] = outcome
                    continue
                report.opened.append(outcome.id)
                report.opened_symbols[signal.symbol] = outcome.id
                busy.add(signal.symbol)
                open_positions.append(OpenPosition(
                    outcome.symbol, PositionSide(outcome.side), outcome.quantity * (outcome.entry_price or Decimal(0)),
                    brackets=self._brackets(outcome.symbol)))
        await self._finish_scan(report, started_cpu)
        return report

    async def _book(self) -> tuple[list[OpenPosition], set[str]]:
        """Open positions as sizing sees them, and every symbol already in a position (books or exchange)."""
        positions = await self.exchange.positions()
        open_positions = [OpenPosition.of(p, self._brackets(p.symbol)) for p in positions]
        busy = {t.symbol for t in await self.repos.trades.active(self.mode)} | {p.symbol for p in positions}
        return open_positions, busy

    # ------------------------------------------------------------------ manual entries (/long, /short)
    async def plan_manual(self, symbol: str, side: PositionSide) -> EntryPlan:
        """What ``open_manual`` would open now (sizing, stop, take-profit), without sending anything.
        Raises ``EntryRefused`` with the reason."""
        request, result, open_positions = await self._manual_request(symbol, side)
        planned = await self._plan(request, result, open_positions)
        if isinstance(planned, str):
            raise EntryRefused(planned)
        return planned[0]

    async def open_manual(self, symbol: str, side: PositionSide) -> TradeRecord:
        """Open a position by the operator's hand: the same checks (halts, breakers, blacklist, limits),
        sizing and protection as a scan entry, planned again at the price of this moment."""
        request, result, _ = await self._manual_request(symbol, side)  # market data outside the lock
        async with self._lock:
            # checked again: a /pause, /kill, breaker, scan entry or mode switch may have come meanwhile
            open_positions = await self._manual_checks(request.symbol)
            outcome = await self._enter(request, result, open_positions)
        if isinstance(outcome, str):
            raise EntryRefused(outcome)
        return outcome

    async def _manual_request(self, symbol: str, side: PositionSide
                              ) -> tuple[EntryRequest, ScanResult, list[OpenPosition]]:
        symbol = symbol.upper()
        open_positions = await self._manual_checks(symbol)
        snapshot = await self.market.snapshot([symbol, *(p.symbol for p in open_positions)])
        result = evaluate_snapshot(snapshot, self.consensus, stop_timeframe=self.config.stop_timeframe)
        signal = result.signals.get(symbol)
        if signal is None or signal.atr <= 0:
            raise EntryRefused(f"not enough market data on {symbol} to size a stop")
        return EntryRequest(symbol, side, signal.atr, 0.0, (MANUAL_VOTE,)), result, open_positions

    async def _manual_checks(self, symbol: str) -> list[OpenPosition]:
        """Raise ``EntryRefused`` unless a manual entry on ``symbol`` is allowed now; the open positions."""
        if self._retired:
            raise EntryRefused("this trader was replaced by a mode switch; try again")
        if not (halts := await self.halts()).entries_allowed:
            raise EntryRefused(f"trading is {halts.describe()}; /resume first")
        if (reason := await self.breakers.entries_blocked(symbol, self.clock.now())) is not None:
            raise EntryRefused(f"breaker: {reason}; /breakers shows when it resets")
        if symbol in await load_blacklist(self.repos.state):
            raise EntryRefused(f"{symbol} is blacklisted; /blacklist remove {symbol} first")
        rules = self.desk.rules.get(symbol)
        if rules is None or not rules.is_tradable:
            raise EntryRefused(f"{symbol} is not a tradable USDⓈ-M perpetual on this exchange")
        open_positions, busy = await self._book()
        if symbol in busy:
            raise EntryRefused(f"already in a position on {symbol}")
        return open_positions

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
        if self.vote_log is not None:
            await self.vote_log.after_scan(report, self._scan_result, self.consensus.threshold)
        await self.bus.publish(ScanCompleted(
            time=now, symbols=report.symbols, signals=len(report.signals), opened=len(report.opened),
            cpu_ms=(time.process_time() - started_cpu) * 1000, skipped_reason=report.halted))

    async def _plan(self, request: EntryRequest, result: ScanResult, open_positions: list[OpenPosition]
                    ) -> tuple[EntryPlan, SymbolRules, str] | str:
        """Limits, then sizing and levels for one entry: ``(plan, rules, regime)`` or the reason to skip it."""
        symbol, side = request.symbol, request.side
        rules = self.desk.rules.get(symbol)
        if rules is None or not rules.is_tradable:
            return "symbol not tradable"
        mark = await self.exchange.mark_price(symbol)
        balance = await self.exchange.balance()
        now = self.clock.now()
        context = result.context(symbol)
        direction = Direction.LONG if side is PositionSide.LONG else Direction.SHORT
        decision = decide_entry(
            signal=Signal(symbol, direction, request.score, 0.0, request.atr), rules=rules,
            mark_price=mark.mark_price, funding_rate=mark.funding_rate, next_funding_time=mark.next_funding_time,
            equity=balance.equity, available=balance.available_balance, wallet=balance.wallet_balance,
            open_positions=open_positions, returns=result.returns([symbol, *(p.symbol for p in open_positions)]),
            context=MarketContext(context.adx, context.atr_ratio, context.atr_pct_history) if context else None,
            outcomes=await self.memory.outcomes(), now=now, risk=self.config.risk,
            limits=self.config.position_limits, adaptive=self.config.adaptive, margin_type=self.config.margin_type)
        if decision.plan is None:
            return decision.reason
        return decision.plan, rules, decision.regime

    async def _enter(self, request: EntryRequest, result: ScanResult, open_positions: list[OpenPosition]
                     ) -> TradeRecord | str:
        """Plan one entry and make it real (intent first, then protected): the trade, or why it was skipped.
        The scan and the operator's /long and /short both come through here."""
        planned = await self._plan(request, result, open_positions)
        if isinstance(planned, str):
            return planned
        plan, rules, regime = planned
        leverage = plan.leverage or self.config.risk.leverage
        await self._ensure_symbol_setup(request.symbol, leverage)
        trade = await self.repos.trades.create(
            mode=self.mode, symbol=request.symbol, side=request.side.value, quantity=plan.quantity,
            stop_price=plan.stop_price, take_profit_price=plan.take_profit_price, leverage=leverage,
            score=request.score, votes=request.votes, now=self.clock.now(), entry_price=plan.reference_price)
        order = await self.desk.market_order(trade, OrderPurpose.ENTRY, request.side.entry_side, plan.quantity,
                                             reduce_only=False)
        if order is None:
            return "entry outcome unknown; will be resolved by reconciliation"
        if order.filled_quantity <= 0:
            await self.repos.trades.mark_failed(trade.id, f"entry {order.status.value}", self.clock.now())
            return f"entry {order.status.value}"
        # a partly filled entry (EXPIRED / PARTIALLY_FILLED with executed quantity) is a real position: protect it
        await self.memory.save_entry_context(trade.id, atr=Decimal(repr(request.atr)), regime=regime,
                                             now=self.clock.now())
        protected = await self.desk.open_protected(trade, order, lambda fill: plan.prices_at(rules, fill),
                                                   request.score)
        return protected if protected is not None else "the stop could not be placed; the position was closed"

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

    async def flatten_account(self, reason: str = "kill_switch", rounds: int = 3) -> FlattenReport:
        """The kill-switch: close every position on the exchange (known to the books or not) and cancel every
        open order, conditional and plain, whoever placed it. A symbol that fails does not stop the others; it
        is retried (``rounds`` passes) and what could still not be done is reported."""
        report = FlattenReport()
        async with self._lock:
            window = self.desk.window()
            for attempt in range(rounds):
                report.failed = {}
                try:
                    symbols = await self._symbols_to_flatten()
                except Exception as exc:  # the account could not even be read: try again
                    report.failed["account"] = str(exc)
                    symbols = {}
                for symbol, position in sorted(symbols.items()):
                    try:
                        await self._flatten_symbol(symbol, position, reason, report)
                    except Exception as exc:  # one symbol failing must not stop the others
                        log.exception("kill-switch: %s could not be flattened", symbol)
                        report.failed[symbol] = str(exc)
                if not report.failed:
                    try:
                        left = await self._symbols_to_flatten()
                    except Exception as exc:
                        report.failed["account"] = str(exc)
                        left = {}
                    report.failed.update({s: "still open after closing" for s in left})
                if not report.failed or attempt == rounds - 1:
                    break
                await window.pause()
        if report.failed:
            await self.desk.alert(Level.CRITICAL, "kill-switch could not finish: " + "; ".join(
                f"{symbol}: {why}" for symbol, why in sorted(report.failed.items())) + ". Check the account.")
        return report

    async def _symbols_to_flatten(self) -> dict[str, Position | None]:
        """Every symbol with a position, an open order of any kind, or an active trade in the books."""
        found: dict[str, Position | None] = {p.symbol: p for p in await self.exchange.positions()}
        for order in await self.exchange.open_protective_orders():
            found.setdefault(order.symbol, None)
        for plain in await self.exchange.open_orders():
            found.setdefault(plain.symbol, None)
        return found

    async def _flatten_symbol(self, symbol: str, position: Position | None, reason: str,
                              report: FlattenReport) -> None:
        if position is not None:
            trade = next((t for t in await self.repos.trades.active(self.mode) if t.symbol == symbol), None)
            if trade is None:  # not Vigil's: booked as a trade of its own so its close is accounted for
                trade = await self.repos.trades.create(
                    mode=self.mode, symbol=symbol, side=position.side.value, quantity=position.quantity,
                    stop_price=position.entry_price, take_profit_price=None, leverage=position.leverage, score=None,
                    votes=["kill-switch"], now=self.clock.now(), status=TradeStatus.OPEN,
                    entry_price=position.entry_price)
            closed = await self.desk.exit(trade, reason)
            if closed is not None:
                report.closed.append(closed)
        await self.exchange.cancel_all_orders(symbol)
        if position is not None and await self.desk.position(symbol) is not None:
            raise ExchangeError(f"{symbol}: the position is still open")

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
            outcome = closed_outcome(
                symbol=trade.symbol, side=PositionSide(trade.side), entry=trade.entry_price,
                exit_price=trade.exit_price, initial_stop=trade.initial_stop_price,
                entry_atr=Decimal(context.get("atr", "0")), stop_atr_mult=self.config.risk.stop_atr_mult,
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
        try:
            await self.desk.refresh_rules(force=False)  # symbol filters: reloaded once a day
        except ExchangeError as exc:
            log.warning("symbol filters could not be refreshed: %s", exc)
        if not halts.stopped:
            if (reason := await self.breakers.close_all_request()) is not None:
                await self.desk.alert(Level.CRITICAL, f"closing every position: {reason}")
                await self.close_all(ExitReason.BREAKER_CLOSE_ALL)
                if not await self.repos.trades.active(self.mode):  # else retried on the next tick
                    await self.breakers.close_all_done(self.clock.now())
            report = await self.reconcile()
            report.failures += await self.manage_exits(report.positions)
        await self._snapshot_equity(balance)
        now = self.clock.now()
        await self.repos.state.set(HEARTBEAT_KEY, now.isoformat(), now)
        return report

    def _btc_atr_ratio(self) -> float | None:
        context = self._scan_result.context("BTCUSDT")
        if context is None:
            return None
        # the memo hands out the same (frozen) context until BTC's stop-timeframe candles change: its ratio (a median
        # of a hundred values) is computed once per context, not on every monitor tick
        if self._btc_ratio is None or self._btc_ratio[0] is not context:
            self._btc_ratio = (context, context.atr_ratio)
        return self._btc_ratio[1]

    async def reconcile(self) -> ReconcileReport:
        """Make the books agree with the exchange (invariant 3) and every position protected (invariant 1)."""
        async with self._lock:
            return await self.reconciler.run()

    async def manage_exits(self, positions: dict[str, Position] | None = None) -> list[str]:
        """Trailing stops, partial exits, time/stale/signal exits for every open trade. ``positions`` as
        reconciliation just read them (saves a request), else fetched. Returns the trades that failed."""
        if self.exits is None:
            return []
        async with self._lock:
            if positions is None:
                positions = {p.symbol: p for p in await self.exchange.positions()}
            return await self.exits.manage(await self.repos.trades.active(self.mode), positions,
                                           self._scan_result.signals)

    async def _snapshot_equity(self, balance: Balance) -> None:
        now = self.clock.now()
        if self._last_equity_at is not None and now - self._last_equity_at < self.config.equity_snapshot_every:
            return
        await self.repos.equity.record(mode=self.mode, time=now, wallet=balance.wallet_balance,
                                       equity=balance.equity, unrealized=balance.unrealized_pnl)
        self._last_equity_at = now
