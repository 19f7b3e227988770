"""The trader: the scan job (find and open protected positions) and the monitor job (reconcile, protect,
snapshot equity). The same code runs in paper, live and backtest; it only sees the ``Exchange`` protocol.

Invariants held here (DESIGN.md):
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from engine.adaptive import AdaptiveConfig, TradeOutcome, adaptive_levels, regime_of
from engine.breakers import AccountSnapshot, BreakerConfig, Breakers
from engine.clock import Clock
from engine.events import (
    Alert,
    EventBus,
    Level,
    PartialExit,
    ScanCompleted,
    StopMoved,
    TradeClosed,
    TradeOpened,
)
from engine.exchange.errors import (
    ExchangeError,
    InsufficientMargin,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    WouldTrigger,
)
from engine.exchange.protocol import Exchange
from engine.exchange.rules import round_price
from engine.exchange.types import (
    Balance,
    Fill,
    LeverageBracket,
    MarginType,
    OrderResult,
    OrderStatus,
    Position,
    PositionSide,
    ProtectiveKind,
    ProtectiveOrder,
    ProtectiveStatus,
    Side,
    SymbolRules,
)
from engine.exits import (
    CloseAll,
    ClosePartial,
    ExitConfig,
    MarketState,
    MoveStop,
    PositionState,
    evaluate_exits,
    observe,
)
from engine.halts import HaltState, load_halts
from engine.market import MarketDataService
from engine.risk import (
    LimitsConfig,
    OpenPosition,
    RiskConfig,
    entry_limits_block,
    plan_entry,
    protective_prices,
    volatility_ratio,
)
from engine.trade_memory import TradeMemory
from storage.records import OrderPurpose, OrderState, TradeRecord, TradeStatus
from storage.repositories import Repositories
from strategies.consensus import Consensus
from strategies.scanner import ScanResult, evaluate_snapshot
from strategies.types import Direction, Signal

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "monitor_heartbeat"
LAST_SCAN_KEY = "last_scan"
FILL_LOOKBACK = timedelta(seconds=5)
PRICE_QUANTUM = Decimal("0.00000001")  # average exit prices over several fills are kept to 8 decimals

_NO_BREAKERS = BreakerConfig(daily_loss_pct=Decimal(0), max_drawdown_pct=Decimal(0), max_consecutive_losses=0,
                             volatility_ratio=0.0, api_errors_max=0, symbol_cooldown=timedelta(0),
                             symbol_daily_loss_pct=Decimal(0))

_KIND_OF = {OrderPurpose.STOP_LOSS: ProtectiveKind.STOP_LOSS, OrderPurpose.TAKE_PROFIT: ProtectiveKind.TAKE_PROFIT}


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


@dataclass(slots=True)
class ReconcileReport:
    closed: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    stops_replaced: list[int] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    resolved_orders: list[str] = field(default_factory=list)
    positions: dict[str, Position] | None = None  # as read at the start; None when the books changed


class Trader:
    def __init__(self, *, exchange: Exchange, market: MarketDataService, consensus: Consensus,
                 repos: Repositories, bus: EventBus, clock: Clock, config: TraderConfig,
                 breakers: Breakers | None = None) -> None:
        self.exchange = exchange
        self.market = market
        self.consensus = consensus
        self.repos = repos
        self.bus = bus
        self.clock = clock
        self.config = config
        self.mode = config.mode
        self._rules: dict[str, SymbolRules] = {}
        self._leverage_set: dict[str, int] = {}
        self._margin_set: set[str] = set()
        self._instance = ""
        # breakers with every threshold at 0 never trip: the default for callers that do not configure them
        self.breakers = breakers or Breakers(repos.state, _NO_BREAKERS, key_prefix=f"breaker:{config.mode}:")
        self.memory = TradeMemory(repos.state, config.mode)
        self._scan_result = ScanResult()
        self._lock = asyncio.Lock()
        self._last_equity_at: datetime | None = None
        self.last_scan: ScanReport | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> ReconcileReport:
        now = self.clock.now()
        self._instance = await self.repos.state.instance_id(now)
        self._rules = await self.exchange.symbol_rules()
        return await self.reconcile()

    def reconfigure(self, config: TraderConfig) -> None:
        """New risk/exit settings (operator /set); leverage is re-applied per symbol on its next entry."""
        self.config = config
        self._leverage_set.clear()

    def client_id(self, trade_id: int, purpose: OrderPurpose, attempt: int) -> str:
        """Deterministic, ≤ 36 chars of Binance's allowed alphabet: ``vg<inst>-<trade>-<P><attempt>``."""
        return f"vg{self._instance}-{trade_id}-{purpose.code}{attempt}"

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
        result = evaluate_snapshot(snapshot, self.consensus, stop_timeframe=self.config.stop_timeframe)
        self._scan_result = result  # the monitor's signal exits and volatility breaker read it
        report.signals = result.ranked
        blocked = halts.describe() if not halts.entries_allowed else await self.breakers.entries_blocked(
            None, self.clock.now())
        if blocked:
            report.halted = blocked if not halts.entries_allowed else f"breaker: {blocked}"
        if blocked or not report.signals:
            await self._finish_scan(report, started_cpu)
            return report
        async with self._lock:
            positions = await self.exchange.positions()
            open_positions = [OpenPosition.of(p, self._brackets(p.symbol)) for p in positions]
            busy = {t.symbol for t in await self.repos.trades.active(self.mode)} | {p.symbol for p in positions}
            for signal in report.signals:
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
        rules = self._rules.get(symbol)
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
        rules = self._rules.get(signal.symbol)
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
        regime = regime_of(context.adx, volatility_ratio(context.atr_pct, context.atr_pct_history[:-1])) \
            if context else ""
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
        await self._ensure_symbol_setup(signal.symbol, plan.leverage or self.config.risk.leverage)
        trade = await self.repos.trades.create(
            mode=self.mode, symbol=signal.symbol, side=side.value, quantity=plan.quantity,
            stop_price=plan.stop_price, take_profit_price=plan.take_profit_price,
            leverage=plan.leverage or self.config.risk.leverage, score=signal.score,
            votes=[f"{v.voter}:{v.direction.name}:{v.confidence:.2f}" for v in signal.votes], now=now,
            entry_price=plan.reference_price)
        cid = self.client_id(trade.id, OrderPurpose.ENTRY, 1)
        await self.repos.orders.record_intent(
            client_id=cid, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=OrderPurpose.ENTRY,
            side=side.entry_side.value, order_type="MARKET", quantity=plan.quantity, trigger_price=None,
            reduce_only=False, now=now)
        order = await self._send_market(trade.symbol, side.entry_side, plan.quantity, cid, reduce_only=False)
        if order is None:
            report.skipped[signal.symbol] = "entry outcome unknown; will be resolved by reconciliation"
            return None
        if order.status is not OrderStatus.FILLED:
            await self.repos.trades.mark_failed(trade.id, f"entry {order.status.value}", self.clock.now())
            report.skipped[signal.symbol] = f"entry {order.status.value}"
            return None
        await self.memory.save_entry_context(trade.id, atr=atr, regime=regime, now=self.clock.now())
        return await self._on_entry_filled(trade, order, lambda fill: plan.prices_at(rules, fill), signal.score)

    async def _ensure_symbol_setup(self, symbol: str, leverage: int) -> None:
        if symbol not in self._margin_set:
            await self.exchange.set_margin_type(symbol, self.config.margin_type)
            self._margin_set.add(symbol)
        if self._leverage_set.get(symbol) != leverage:
            await self.exchange.set_leverage(symbol, leverage)
            self._leverage_set[symbol] = leverage

    async def _send_market(self, symbol: str, side: Side, quantity: Decimal, cid: str, *,
                           reduce_only: bool) -> OrderResult | None:
        """Send a market order whose intent is already recorded. ``None`` = outcome still unknown."""
        try:
            result = await self.exchange.place_market_order(symbol, side, quantity, cid, reduce_only=reduce_only)
        except OrderStatusUnknown as exc:
            log.warning("order %s outcome unknown (%s); querying by client id", cid, exc)
            try:
                result = await self.exchange.get_order(symbol, cid)
            except ExchangeError as query_exc:
                log.warning("query of %s failed: %s", cid, query_exc)
                result = None
            if result is None:
                await self.repos.orders.update(cid, status=OrderState.UNKNOWN, now=self.clock.now(), error=str(exc))
                await self._alert(Level.WARNING, f"{symbol}: order {cid} outcome unknown ({exc.reason}); "
                                  "it will be resolved by querying the exchange on the next monitor tick")
                return None
        except OrderRejected as exc:
            await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(), error=str(exc))
            log.info("order %s rejected: %s", cid, exc)
            if reduce_only or isinstance(exc, InsufficientMargin):
                await self._alert(Level.WARNING, f"{symbol}: order {cid} rejected by the exchange: {exc}")
            return OrderResult(symbol, cid, "", side, OrderStatus.REJECTED, quantity, Decimal(0), Decimal(0),
                               reduce_only, self.clock.now())
        except ExchangeError as exc:
            # transient failures surface here only after the adapter's own retries; the request was refused
            await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(), error=str(exc))
            await self._alert(Level.WARNING, f"{symbol}: order {cid} failed: {exc}")
            return OrderResult(symbol, cid, "", side, OrderStatus.REJECTED, quantity, Decimal(0), Decimal(0),
                               reduce_only, self.clock.now())
        await self._record_order_result(result)
        return result

    async def _record_order_result(self, result: OrderResult) -> None:
        state = {
            OrderStatus.FILLED: OrderState.FILLED, OrderStatus.CANCELED: OrderState.CANCELED,
            OrderStatus.REJECTED: OrderState.REJECTED, OrderStatus.EXPIRED: OrderState.EXPIRED,
        }.get(result.status, OrderState.OPEN)
        await self.repos.orders.update(result.client_id, status=state, now=self.clock.now(),
                                       exchange_id=result.exchange_id or None,
                                       filled_quantity=result.filled_quantity,
                                       avg_price=result.avg_price if result.filled_quantity > 0 else None,
                                       fee=result.fee)

    async def _on_entry_filled(self, trade: TradeRecord, result: OrderResult,
                               prices_at: Callable[[Decimal], tuple[Decimal, Decimal]],
                               score: float | None) -> TradeRecord | None:
        rules = self._rules[trade.symbol]
        entry = result.avg_price
        stop, take = prices_at(entry)
        liq = await self._liquidation_price(trade.symbol)
        if liq is not None:
            liq = round_price(rules, liq)
        trade = await self.repos.trades.mark_open(
            trade.id, entry_price=entry, quantity=result.filled_quantity, stop_price=stop,
            take_profit_price=take, liquidation_price=liq, fee=result.fee, now=self.clock.now())
        await self.memory.save_exit_state(PositionState.opened(
            trade_id=trade.id, symbol=trade.symbol, side=PositionSide(trade.side), entry_price=entry,
            quantity=result.filled_quantity, stop_price=stop, opened_at=trade.opened_at or self.clock.now()),
            self.clock.now())
        if not await self._protect(trade, stop, take):
            return None
        trade = await self.repos.trades.get(trade.id)
        await self.bus.publish(TradeOpened(
            time=self.clock.now(), trade_id=trade.id, mode=self.mode, symbol=trade.symbol, side=trade.side,
            quantity=trade.quantity, entry_price=entry, stop_price=stop, take_profit_price=take,
            leverage=trade.leverage, liquidation_price=liq or Decimal(0), fee=result.fee,
            score=float(score or 0.0), votes=trade.votes))
        return trade

    async def _liquidation_price(self, symbol: str) -> Decimal | None:
        for pos in await self.exchange.positions():
            if pos.symbol == symbol:
                return pos.liquidation_price
        return None

    async def _protect(self, trade: TradeRecord, stop: Decimal, take: Decimal | None) -> bool:
        """Place stop then take-profit. If the stop cannot be placed, close at market. True if protected."""
        try:
            await self._place_protective(trade, OrderPurpose.STOP_LOSS, stop)
        except ExchangeError as exc:
            await self._alert(Level.CRITICAL, f"{trade.symbol}: stop-loss could not be placed ({exc}); "
                              "closing the position at market")
            await self._exit(trade, "stop_unplaceable")
            return False
        if take is not None:
            try:
                await self._place_protective(trade, OrderPurpose.TAKE_PROFIT, take)
            except ExchangeError as exc:
                await self._alert(Level.WARNING, f"{trade.symbol}: take-profit could not be placed ({exc}); "
                                  "the stop-loss still protects the position")
        return True

    async def _next_attempt(self, trade_id: int, purpose: OrderPurpose) -> int:
        return len(await self.repos.orders.for_trade(trade_id, purpose)) + 1

    async def _place_protective(self, trade: TradeRecord, purpose: OrderPurpose,
                                trigger: Decimal) -> ProtectiveOrder:
        side = PositionSide(trade.side).exit_side
        cid = self.client_id(trade.id, purpose, await self._next_attempt(trade.id, purpose))
        kind = _KIND_OF[purpose]
        await self.repos.orders.record_intent(
            client_id=cid, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=purpose,
            side=side.value, order_type=kind.value, quantity=None, trigger_price=trigger, reduce_only=True,
            now=self.clock.now())
        try:
            order = await self.exchange.place_protective_order(trade.symbol, side, kind, trigger, cid)
        except OrderStatusUnknown:
            found = await self.exchange.get_protective_order(trade.symbol, cid)
            if found is None:
                await self.repos.orders.update(cid, status=OrderState.UNKNOWN, now=self.clock.now())
                raise
            order = found
        except ExchangeError as exc:
            await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(), error=str(exc))
            raise
        await self.repos.orders.update(cid, status=OrderState.OPEN, now=self.clock.now(),
                                       exchange_id=order.exchange_id)
        if purpose is OrderPurpose.STOP_LOSS:
            await self.repos.trades.update_protection(trade.id, stop_price=trigger, now=self.clock.now())
        else:
            await self.repos.trades.update_protection(trade.id, take_profit_price=trigger, now=self.clock.now())
        return order

    # ------------------------------------------------------------------ exits
    async def close_symbol(self, symbol: str, reason: str) -> TradeRecord | None:
        """Close the active trade on ``symbol`` at market (operator command, kill-switch)."""
        async with self._lock:
            for trade in await self.repos.trades.active(self.mode):
                if trade.symbol == symbol:
                    return await self._exit(trade, reason)
        return None

    async def close_all(self, reason: str) -> list[TradeRecord]:
        closed: list[TradeRecord] = []
        async with self._lock:
            for trade in await self.repos.trades.active(self.mode):
                result = await self._exit(trade, reason)
                if result is not None:
                    closed.append(result)
        return closed

    async def _exit(self, trade: TradeRecord, reason: str) -> TradeRecord | None:
        """Market-close the position of ``trade`` (reduce-only), cancel its protective orders, book it."""
        position = await self._position(trade.symbol)
        if position is not None:
            cid = self.client_id(trade.id, OrderPurpose.EXIT, await self._next_attempt(trade.id, OrderPurpose.EXIT))
            await self.repos.orders.record_intent(
                client_id=cid, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=OrderPurpose.EXIT,
                side=position.side.exit_side.value, order_type="MARKET", quantity=position.quantity,
                trigger_price=None, reduce_only=True, now=self.clock.now(), reason=reason)
            result = await self._send_market(trade.symbol, position.side.exit_side, position.quantity, cid,
                                             reduce_only=True)
            if result is None or result.status is not OrderStatus.FILLED:
                await self._alert(Level.CRITICAL, f"{trade.symbol}: market close failed; the position stays open "
                                  "with its exchange-side stop. Check the account.")
                return None
        await self._cancel_protective(trade)
        return await self._book_close(trade, reason)

    async def _position(self, symbol: str) -> Position | None:
        for pos in await self.exchange.positions():
            if pos.symbol == symbol:
                return pos
        return None

    async def _cancel_protective(self, trade: TradeRecord) -> None:
        for order in await self.repos.orders.open_protective(trade.id):
            try:
                await self.exchange.cancel_protective_order(trade.symbol, order.client_id)
                state = OrderState.CANCELED
            except OrderNotFound:
                found = await self.exchange.get_protective_order(trade.symbol, order.client_id)
                state = _order_state_of(found) if found is not None else OrderState.EXPIRED
            await self.repos.orders.update(order.client_id, status=state, now=self.clock.now())

    async def _book_close(self, trade: TradeRecord, reason: str) -> TradeRecord:
        """Book a trade whose position is gone, from the exchange's own fills and funding payments."""
        opened = trade.opened_at or trade.created_at
        since = opened - FILL_LOOKBACK
        fills = [f for f in await self.exchange.fills(trade.symbol, since) if f.time >= since]
        funding = await self.exchange.funding_payments(trade.symbol, opened)
        side = PositionSide(trade.side)
        exits = [f for f in fills if f.side is side.exit_side]
        exit_qty = sum((f.quantity for f in exits), Decimal(0))
        exit_price = (sum((f.price * f.quantity for f in exits), Decimal(0)) / exit_qty).quantize(PRICE_QUANTUM) \
            if exit_qty else (trade.entry_price or Decimal(0))
        realized = sum((f.realized_pnl for f in fills), Decimal(0))
        fees = sum((f.fee for f in fills), Decimal(0))
        funding_total = sum((p.amount for p in funding), Decimal(0))
        for f in fills:
            await self._ledger_fill(trade, f)
        for p in funding:
            await self.repos.ledger.add_funding(mode=self.mode, trade_id=trade.id, symbol=trade.symbol,
                                                amount=p.amount, time=p.time)
        closed_at = max((f.time for f in exits), default=self.clock.now())
        booked = await self.repos.trades.close(trade.id, exit_price=exit_price, reason=reason,
                                               realized_pnl=realized, fees=fees, funding=funding_total,
                                               closed_at=closed_at)
        event = TradeClosed(
            time=closed_at, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, side=trade.side,
            quantity=trade.initial_quantity, entry_price=trade.entry_price or Decimal(0), exit_price=exit_price,
            reason=reason, realized_pnl=realized, fees=fees, funding=funding_total)
        await self.bus.publish(event)
        await self._learn_from(booked, exit_price)
        for breaker_event in await self.breakers.record_trade_closed(event, self.clock.now()):
            await self.bus.publish(breaker_event)
        return booked

    async def _learn_from(self, trade: TradeRecord, exit_price: Decimal) -> None:
        """Store the closed trade's outcome (R multiple, excursions in ATR) for adaptive stops and Kelly."""
        state = await self.memory.exit_state(trade.id)
        context = await self.memory.entry_context(trade.id)
        if trade.entry_price is not None and trade.opened_at is not None:
            risk = abs(trade.entry_price - trade.initial_stop_price)
            atr = Decimal(context.get("atr", "0")) or risk / self.config.risk.stop_atr_mult
            outcome = TradeOutcome.from_prices(
                symbol=trade.symbol, side=PositionSide(trade.side), entry=trade.entry_price, exit_price=exit_price,
                initial_stop=trade.initial_stop_price, atr=atr,
                best=state.best_price if state else max(trade.entry_price, exit_price),
                worst=state.worst_price if state else min(trade.entry_price, exit_price),
                opened_at=trade.opened_at, regime=context.get("regime", ""), net_pnl=trade.net_pnl,
                quantity=trade.initial_quantity)
            await self.memory.add_outcome(outcome, self.clock.now())
        await self.memory.forget(trade.id)

    async def _ledger_fill(self, trade: TradeRecord, fill: Fill) -> None:
        await self.repos.ledger.add_fill(
            mode=self.mode, trade_id=trade.id, order_client_id=fill.client_id, exchange_trade_id=fill.trade_id,
            symbol=fill.symbol, side=fill.side.value, price=fill.price, quantity=fill.quantity, fee=fill.fee,
            realized_pnl=fill.realized_pnl, time=fill.time)

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
                await self._alert(Level.CRITICAL, f"closing every position: {reason}")
                await self.close_all("breaker_close_all")
                await self.breakers.close_all_done(self.clock.now())
            report = await self.reconcile()
            if self.config.exits is not None:
                await self.manage_exits(report.positions)
        await self._snapshot_equity(balance)
        now = self.clock.now()
        await self.repos.state.set(HEARTBEAT_KEY, now.isoformat(), now)
        return report

    def _btc_atr_ratio(self) -> float | None:
        context = self._scan_result.context("BTCUSDT")
        if context is None or len(context.atr_pct_history) < 2:
            return None
        return volatility_ratio(context.atr_pct, context.atr_pct_history[:-1])

    # ------------------------------------------------------------------ exits (trailing, partials, time)
    async def manage_exits(self, positions: dict[str, Position] | None = None) -> None:
        """Trailing stops, partial exits, time/stale/signal exits for every open trade. ``positions`` as
        reconciliation just read them (saves a request), else fetched."""
        assert self.config.exits is not None
        async with self._lock:
            if positions is None:
                positions = {p.symbol: p for p in await self.exchange.positions()}
            for trade in await self.repos.trades.active(self.mode):
                position = positions.get(trade.symbol)
                if trade.status is TradeStatus.OPEN and position is not None:
                    await self._manage_one(trade, position, self.config.exits)

    async def _manage_one(self, trade: TradeRecord, position: Position, cfg: ExitConfig) -> None:
        now = self.clock.now()
        state = await self.memory.exit_state(trade.id) or PositionState.opened(
            trade_id=trade.id, symbol=trade.symbol, side=PositionSide(trade.side),
            entry_price=trade.entry_price or position.entry_price, quantity=trade.initial_quantity,
            stop_price=trade.initial_stop_price, opened_at=trade.opened_at or now)
        state = replace(state, quantity=position.quantity, stop_price=trade.stop_price)
        signal = self._scan_result.signals.get(trade.symbol)
        market = MarketState(mark_price=position.mark_price,
                             atr=Decimal(repr(signal.atr)) if signal and signal.atr > 0 else None,
                             consensus=signal.direction if signal else None,
                             consensus_score=signal.score if signal else 0.0)
        actions = evaluate_exits(state, market, cfg, now, rules=self._rules[trade.symbol])
        before, state = state, observe(state, market)
        for action in actions:
            if isinstance(action, CloseAll):
                await self._exit(trade, action.reason)
                return
            if isinstance(action, ClosePartial):
                filled = await self._close_partial(trade, action.quantity, action.reason)
                if filled is None:
                    break
                state = state.after_partial(filled, action.step)
                trade = await self.repos.trades.get(trade.id)
            elif isinstance(action, MoveStop):
                if not await self._move_stop(trade, action.new_price, action.reason):
                    break
                state = state.with_stop(action.new_price)
                trade = await self.repos.trades.get(trade.id)
            if trade.status is not TradeStatus.OPEN:
                return
        if state != before or (not actions and await self.memory.exit_state(trade.id) is None):
            await self.memory.save_exit_state(state, now)

    async def _move_stop(self, trade: TradeRecord, new_price: Decimal, reason: str) -> bool:
        """Cancel + place (Binance cannot modify a conditional order, nor hold two close-position stops on one
        side). If the new stop cannot be placed the old level is restored at once; if neither can be placed
        the position is closed at market. True if the stop now sits at ``new_price``."""
        old_price = trade.stop_price
        for order in await self.repos.orders.open_protective(trade.id):
            if order.purpose is not OrderPurpose.STOP_LOSS:
                continue
            try:
                await self.exchange.cancel_protective_order(trade.symbol, order.client_id)
                await self.repos.orders.update(order.client_id, status=OrderState.CANCELED, now=self.clock.now())
            except OrderNotFound:
                found = await self.exchange.get_protective_order(trade.symbol, order.client_id)
                state = _order_state_of(found) if found is not None else OrderState.EXPIRED
                await self.repos.orders.update(order.client_id, status=state, now=self.clock.now())
                if state is OrderState.TRIGGERED:
                    return False  # the stop fired; reconciliation books the close
        try:
            await self._place_protective(trade, OrderPurpose.STOP_LOSS, new_price)
        except WouldTrigger:
            await self._exit(trade, reason)
            return False
        except ExchangeError as exc:
            try:
                await self._place_protective(trade, OrderPurpose.STOP_LOSS, old_price)
            except ExchangeError:
                await self._alert(Level.CRITICAL, f"{trade.symbol}: stop could not be moved ({exc}) nor restored; "
                                  "closing the position at market")
                await self._exit(trade, "stop_unplaceable")
                return False
            await self._alert(Level.WARNING, f"{trade.symbol}: stop could not be moved to {new_price} ({exc}); "
                              f"it stays at {old_price}")
            return False
        await self.bus.publish(StopMoved(time=self.clock.now(), trade_id=trade.id, symbol=trade.symbol,
                                         old_stop=old_price, new_stop=new_price, reason=reason))
        return True

    async def _close_partial(self, trade: TradeRecord, quantity: Decimal, reason: str) -> Decimal | None:
        side = PositionSide(trade.side)
        cid = self.client_id(trade.id, OrderPurpose.PARTIAL, await self._next_attempt(trade.id, OrderPurpose.PARTIAL))
        await self.repos.orders.record_intent(
            client_id=cid, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=OrderPurpose.PARTIAL,
            side=side.exit_side.value, order_type="MARKET", quantity=quantity, trigger_price=None, reduce_only=True,
            now=self.clock.now())
        result = await self._send_market(trade.symbol, side.exit_side, quantity, cid, reduce_only=True)
        if result is None or result.status is not OrderStatus.FILLED:
            return None
        filled = result.filled_quantity
        await self.repos.trades.update_quantity(trade.id, max(trade.quantity - filled, Decimal(0)), self.clock.now())
        pnl = (result.avg_price - (trade.entry_price or result.avg_price)) * filled * side.sign
        await self.bus.publish(PartialExit(time=self.clock.now(), trade_id=trade.id, symbol=trade.symbol,
                                           quantity=filled, price=result.avg_price, realized_pnl=pnl, reason=reason))
        return filled

    async def _snapshot_equity(self, balance: Balance) -> None:
        now = self.clock.now()
        if self._last_equity_at is not None and now - self._last_equity_at < self.config.equity_snapshot_every:
            return
        await self.repos.equity.record(mode=self.mode, time=now, wallet=balance.wallet_balance,
                                       equity=balance.equity, unrealized=balance.unrealized_pnl)
        self._last_equity_at = now

    async def reconcile(self) -> ReconcileReport:
        """Make the books agree with the exchange (invariant 3) and every position protected (invariant 1)."""
        report = ReconcileReport()
        async with self._lock:
            await self._resolve_unknown_orders(report)
            positions = {p.symbol: p for p in await self.exchange.positions()}
            open_orders = await self.exchange.open_protective_orders()
            by_symbol: dict[str, list[ProtectiveOrder]] = {}
            for order in open_orders:
                by_symbol.setdefault(order.symbol, []).append(order)
            active = await self.repos.trades.active(self.mode)
            known = {t.symbol for t in active}
            for trade in active:
                position = positions.get(trade.symbol)
                if trade.status is TradeStatus.PENDING:
                    await self._resolve_pending(trade, position, report)
                elif position is None:
                    reason = await self._exit_reason(trade)
                    await self._cancel_protective(trade)
                    await self._book_close(trade, reason)
                    report.closed.append(trade.id)
                else:
                    await self._ensure_stop(trade, position, by_symbol.get(trade.symbol, []), report)
            for symbol, position in positions.items():
                if symbol not in known:
                    await self._adopt(position, report)
            for symbol, orders in by_symbol.items():
                if symbol not in positions:
                    for order in orders:
                        await self._cancel_orphan(order, report)
            if not (report.closed or report.adopted):
                report.positions = positions
        return report

    async def _resolve_unknown_orders(self, report: ReconcileReport) -> None:
        for order in await self.repos.orders.unresolved(self.mode):
            if order.purpose in (OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT):
                found_p = await self.exchange.get_protective_order(order.symbol, order.client_id)
                state = _order_state_of(found_p) if found_p is not None else OrderState.REJECTED
                await self.repos.orders.update(order.client_id, status=state, now=self.clock.now(),
                                               exchange_id=found_p.exchange_id if found_p else None,
                                               error=None if found_p else "never reached the exchange")
            else:
                found = await self.exchange.get_order(order.symbol, order.client_id)
                if found is None:
                    await self.repos.orders.update(order.client_id, status=OrderState.REJECTED, now=self.clock.now(),
                                                   error="never reached the exchange")
                else:
                    await self._record_order_result(found)
            report.resolved_orders.append(order.client_id)

    async def _resolve_pending(self, trade: TradeRecord, position: Position | None,
                               report: ReconcileReport) -> None:
        """A trade whose entry outcome was not confirmed (crash or lost answer) after its orders are resolved:
        the exchange position decides. No position → the entry never filled; a position → protect it."""
        if position is None:
            await self.repos.trades.mark_failed(trade.id, "entry never filled", self.clock.now())
            return
        entries = await self.repos.orders.for_trade(trade.id, OrderPurpose.ENTRY)
        filled = next((o for o in entries if o.status is OrderState.FILLED), None)
        reference = trade.entry_price or position.entry_price
        dist = abs(reference - trade.initial_stop_price)
        atr = dist / self.config.risk.stop_atr_mult
        rules = self._rules[trade.symbol]
        side = PositionSide(trade.side)
        result = OrderResult(
            symbol=trade.symbol, client_id=filled.client_id if filled else "",
            exchange_id=(filled.exchange_id or "") if filled else "", side=PositionSide(trade.side).entry_side,
            status=OrderStatus.FILLED, quantity=position.quantity, filled_quantity=position.quantity,
            avg_price=position.entry_price, reduce_only=False, time=self.clock.now(),
            fee=filled.fee if filled else Decimal(0))
        if await self._on_entry_filled(
                trade, result, lambda fill: protective_prices(rules, side, fill, dist, atr, self.config.risk),
                trade.score) is not None:
            report.adopted.append(trade.id)

    async def _exit_reason(self, trade: TradeRecord) -> str:
        for order in await self.repos.orders.for_trade(trade.id, OrderPurpose.EXIT):
            if order.status is OrderState.FILLED:  # our own exit, whose answer was lost (crash, timeout)
                return order.reason or "manual_close"
        for order in await self.repos.orders.open_protective(trade.id):
            found = await self.exchange.get_protective_order(trade.symbol, order.client_id)
            if found is not None and found.status in (ProtectiveStatus.TRIGGERED, ProtectiveStatus.FINISHED):
                await self.repos.orders.update(order.client_id, status=OrderState.TRIGGERED, now=self.clock.now())
                if order.purpose is OrderPurpose.TAKE_PROFIT:
                    return "take_profit"
                return "stop_loss" if trade.stop_price == trade.initial_stop_price else "trailing_stop"
        since = (trade.opened_at or trade.created_at) - FILL_LOOKBACK
        exits = [f for f in await self.exchange.fills(trade.symbol, since)
                 if f.side is PositionSide(trade.side).exit_side]
        if exits and (exits[-1].client_id or "").startswith("autoclose-"):
            return "liquidation"  # Binance names liquidation orders autoclose-…
        if exits and trade.liquidation_price and _near(exits[-1].price, trade.liquidation_price, Decimal("0.005")):
            return "liquidation"
        return "manual"

    async def _ensure_stop(self, trade: TradeRecord, position: Position, orders: Sequence[ProtectiveOrder],
                           report: ReconcileReport) -> None:
        if any(o.kind is ProtectiveKind.STOP_LOSS and o.status.is_open for o in orders):
            await self._ensure_take_profit(trade, orders)
            return
        await self._alert(Level.WARNING, f"{trade.symbol}: stop-loss missing on the exchange; re-placing it at "
                          f"{trade.stop_price}")
        for order in await self.repos.orders.open_protective(trade.id):
            if order.purpose is OrderPurpose.STOP_LOSS:
                await self.repos.orders.update(order.client_id, status=OrderState.EXPIRED, now=self.clock.now())
        try:
            await self._place_protective(trade, OrderPurpose.STOP_LOSS, trade.stop_price)
            report.stops_replaced.append(trade.id)
        except WouldTrigger:
            await self._alert(Level.CRITICAL, f"{trade.symbol}: price is already beyond the stop "
                              f"{trade.stop_price}; closing at market")
            await self._exit(trade, "stop_loss")
        except ExchangeError as exc:
            await self._alert(Level.CRITICAL, f"{trade.symbol}: stop-loss could not be re-placed ({exc}); "
                              "closing at market")
            await self._exit(trade, "stop_unplaceable")

    async def _ensure_take_profit(self, trade: TradeRecord, orders: Sequence[ProtectiveOrder]) -> None:
        if trade.take_profit_price is None or any(
                o.kind is ProtectiveKind.TAKE_PROFIT and o.status.is_open for o in orders):
            return
        for order in await self.repos.orders.open_protective(trade.id):
            if order.purpose is OrderPurpose.TAKE_PROFIT:
                await self.repos.orders.update(order.client_id, status=OrderState.EXPIRED, now=self.clock.now())
        try:
            await self._place_protective(trade, OrderPurpose.TAKE_PROFIT, trade.take_profit_price)
        except ExchangeError as exc:
            log.warning("%s: take-profit could not be re-placed: %s", trade.symbol, exc)

    async def _adopt(self, position: Position, report: ReconcileReport) -> None:
        """A position we did not open: book it, protect it at the maximum stop distance, tell the operator."""
        rules = self._rules.get(position.symbol)
        if rules is None:
            await self._alert(Level.CRITICAL, f"{position.symbol}: unknown position on a symbol without rules; "
                              "close it by hand")
            return
        max_dist = position.entry_price * self.config.risk.max_stop_pct / Decimal(100)
        atr_equiv = max_dist / self.config.risk.stop_atr_mult
        stop, take = protective_prices(rules, position.side, position.entry_price, max_dist, atr_equiv,
                                       self.config.risk)
        now = self.clock.now()
        trade = await self.repos.trades.create(
            mode=self.mode, symbol=position.symbol, side=position.side.value, quantity=position.quantity,
            stop_price=stop, take_profit_price=take, leverage=position.leverage, score=None, votes=["adopted"],
            now=now, status=TradeStatus.OPEN, entry_price=position.entry_price)
        await self._alert(Level.WARNING, f"{position.symbol}: found a {position.side.value} position of "
                          f"{position.quantity} not opened by Vigil; adopted it and placed a stop at {stop}")
        if await self._protect(trade, stop, take):
            report.adopted.append(trade.id)

    async def _cancel_orphan(self, order: ProtectiveOrder, report: ReconcileReport) -> None:
        try:
            await self.exchange.cancel_protective_order(order.symbol, order.client_id)
        except OrderNotFound:
            return
        report.orphans_cancelled.append(order.client_id)
        if (record := await self.repos.orders.get(order.client_id)) is not None:
            await self.repos.orders.update(record.client_id, status=OrderState.CANCELED, now=self.clock.now())
        log.info("cancelled orphaned %s %s on %s (no position)", order.kind.value, order.client_id, order.symbol)

    async def _alert(self, level: Level, message: str) -> None:
        log.log(logging.CRITICAL if level is Level.CRITICAL else logging.WARNING, message)
        await self.bus.publish(Alert(time=self.clock.now(), level=level, message=message))


def _order_state_of(order: ProtectiveOrder) -> OrderState:
    return {
        ProtectiveStatus.NEW: OrderState.OPEN, ProtectiveStatus.TRIGGERING: OrderState.OPEN,
        ProtectiveStatus.TRIGGERED: OrderState.TRIGGERED, ProtectiveStatus.FINISHED: OrderState.TRIGGERED,
        ProtectiveStatus.CANCELED: OrderState.CANCELED, ProtectiveStatus.REJECTED: OrderState.REJECTED,
        ProtectiveStatus.EXPIRED: OrderState.EXPIRED,
    }[order.status]


def _near(a: Decimal, b: Decimal, tolerance: Decimal) -> bool:
    return b != 0 and abs(a - b) / b <= tolerance
