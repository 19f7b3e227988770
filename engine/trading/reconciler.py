"""Reconciliation (invariants 1 and 3): make the books agree with the exchange and every position protected.

Run at start and on every monitor tick, under the trader's lock:
- orders whose outcome is unknown are resolved by their client id (never re-sent);
- a trade whose entry was not confirmed is protected if its position exists, else marked failed;
- a position gone from the exchange is booked with its real exit (our own exit, stop, take-profit,
  liquidation or manual) from the exchange's fills and funding;
- a position unknown to the books is adopted, protected at the maximum stop distance and reported;
- an open trade's quantity follows its position (a partial exit whose answer was lost);
- a missing stop (or take-profit) is re-placed; Vigil's own conditional orders with no position are cancelled
  (never the operator's).

Each trade, and each step, is isolated: one that keeps raising is reported in ``ReconcileReport.failures`` and
does not stop the others from being protected and booked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from core.enums import ExitReason
from engine.events import Level
from engine.exchange.errors import ExchangeError, OrderNotFound, WouldTrigger
from engine.exchange.types import (
    OrderResult,
    OrderStatus,
    Position,
    PositionSide,
    ProtectiveKind,
    ProtectiveOrder,
    SymbolRules,
)
from engine.policy.risk import RiskConfig, protective_prices
from engine.trading.order_desk import OrderDesk, order_state_of, rests_for
from storage.records import OrderPurpose, OrderRecord, OrderState, TradeRecord, TradeStatus

log = logging.getLogger(__name__)

@dataclass(slots=True)
class ReconcileReport:
    closed: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    stops_replaced: list[int] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    resolved_orders: list[str] = field(default_factory=list)
    positions: dict[str, Position] | None = None  # as read at the start; None when the books changed
    failures: list[str] = field(default_factory=list)  # steps that raised (each isolated from the others)


# a lost entry answer whose order the exchange does not know (yet) stays unresolved this many ticks before it is
# called never sent: the query can miss an order the matching engine is still processing
UNRESOLVED_TICKS = 5


class Reconciler:
    def __init__(self, desk: OrderDesk, risk: RiskConfig) -> None:
        self.desk = desk
        self.risk = risk
        self._misses: dict[str, int] = {}

    async def _isolated(self, what: str, step: Awaitable[object], report: ReconcileReport) -> None:
        """Run one step; a failure is logged, reported and left for the next tick."""
        try:
            await step
        except Exception as exc:
            log.exception("reconciliation step failed: %s", what)
            report.failures.append(f"{what}: {exc}")

    @property
    def _repos(self):  # noqa: ANN202 - shorthand
        return self.desk.repos

    async def run(self) -> ReconcileReport:
        report = ReconcileReport()
        desk = self.desk
        for order in await self._repos.orders.unresolved(desk.mode):
            await self._isolated(f"resolve order {order.client_id}", self._resolve_order(order, report), report)
        positions = {p.symbol: p for p in await desk.exchange.positions()}
        by_symbol: dict[str, list[ProtectiveOrder]] = {}
        for order in await desk.exchange.open_protective_orders():
            by_symbol.setdefault(order.symbol, []).append(order)
        active = await self._repos.trades.active(desk.mode)
        for trade in active:
            await self._isolated(f"{trade.symbol} trade {trade.id}",
                                 self._reconcile_trade(trade, positions.get(trade.symbol),
                                                       by_symbol.get(trade.symbol, []), report), report)
        known = {t.symbol for t in active}
        for symbol, position in positions.items():
            if symbol not in known:
                await self._isolated(f"adopt {symbol}", self._adopt(position, by_symbol.get(symbol, []), report),
                                     report)
        for symbol, orders in by_symbol.items():
            if symbol not in positions:
                for order in orders:
                    await self._isolated(f"orphan {order.client_id}", self._cancel_orphan(order, report), report)
        if not (report.closed or report.adopted):
            report.positions = positions
        return report

    async def _reconcile_trade(self, trade: TradeRecord, position: Position | None,
                               orders: Sequence[ProtectiveOrder], report: ReconcileReport) -> None:
        desk = self.desk
        if trade.status is TradeStatus.PENDING:
            await self._resolve_pending(trade, position, report)
        elif position is None:
            reason = await desk.exit_reason(trade)
            await desk.cancel_protective(trade)
            if await desk.book_close(trade, reason) is not None:
                report.closed.append(trade.id)
        else:
            if trade.quantity != position.quantity:  # e.g. a partial exit whose answer was lost
                await self._repos.trades.update_quantity(trade.id, position.quantity, desk.clock.now())
            await self._ensure_stop(trade, position, orders, report)

    async def _resolve_order(self, order: OrderRecord, report: ReconcileReport) -> None:
        desk, now = self.desk, self.desk.clock.now()
        if order.purpose in (OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT):
            found_p = await desk.exchange.get_protective_order(order.symbol, order.client_id)
            state = order_state_of(found_p) if found_p is not None else OrderState.REJECTED
            await self._repos.orders.update(order.client_id, status=state, now=now,
                                            exchange_id=found_p.exchange_id if found_p else None,
                                            error=None if found_p else "never reached the exchange")
        else:
            found = await desk.exchange.get_order(order.symbol, order.client_id)
            if found is None:
                misses = self._misses.get(order.client_id, 0) + 1
                if order.purpose is OrderPurpose.ENTRY and misses < UNRESOLVED_TICKS:
                    self._misses[order.client_id] = misses  # the exchange may not show it yet: ask again
                    await self._repos.orders.update(order.client_id, status=OrderState.UNKNOWN, now=now)
                    return
                self._misses.pop(order.client_id, None)
                await self._repos.orders.update(order.client_id, status=OrderState.REJECTED, now=now,
                                                error="never reached the exchange")
            else:
                self._misses.pop(order.client_id, None)
                await desk.record_order_result(found)
        report.resolved_orders.append(order.client_id)

    async def _resolve_pending(self, trade: TradeRecord, position: Position | None,
                               report: ReconcileReport) -> None:
        """A trade whose entry outcome was not confirmed (crash or lost answer) after its orders are resolved:
        the exchange position decides. No position → the entry never filled (once its order is known never to
        have reached the exchange); a position → protect it at the trade's own planned stop."""
        if position is None:
            entries = await self._repos.orders.for_trade(trade.id, OrderPurpose.ENTRY)
            if any(not o.status.is_final for o in entries):
                return  # still unresolved: decided on a later tick
            await self._repos.trades.mark_failed(trade.id, "entry never filled", self.desk.clock.now())
            return
        entries = await self._repos.orders.for_trade(trade.id, OrderPurpose.ENTRY)
        filled = next((o for o in entries if o.status is OrderState.FILLED), None)
        dist = abs((trade.entry_price or position.entry_price) - trade.initial_stop_price)
        atr = dist / self.risk.stop_atr_mult
        rules = self.desk.rules[trade.symbol]
        side = PositionSide(trade.side)
        fill = OrderResult(
            symbol=trade.symbol, client_id=filled.client_id if filled else "",
            exchange_id=(filled.exchange_id or "") if filled else "", side=side.entry_side,
            status=OrderStatus.FILLED, quantity=position.quantity, filled_quantity=position.quantity,
            avg_price=position.entry_price, reduce_only=False, time=self.desk.clock.now(),
            fee=filled.fee if filled else Decimal(0))
        # opened when its intent was written (moments before the fill): fees, funding and the time stop count
        # from there, not from this recovery
        if await self.desk.open_protected(
                trade, fill, lambda price: protective_prices(rules, side, price, dist, atr, self.risk),
                trade.score, opened_at=trade.created_at) is not None:
            report.adopted.append(trade.id)

    async def _ensure_stop(self, trade: TradeRecord, position: Position, orders: Sequence[ProtectiveOrder],
                           report: ReconcileReport) -> None:
        desk = self.desk
        if any(protects(o, position) for o in orders):
            await self._ensure_take_profit(trade, orders)
            return
        await desk.alert(Level.WARNING, f"{trade.symbol}: stop-loss missing on the exchange; re-placing it at "
                         f"{trade.stop_price}")
        await self._expire_records(trade, OrderPurpose.STOP_LOSS)
        try:
            await desk.place_protective(trade, OrderPurpose.STOP_LOSS, trade.stop_price)
            report.stops_replaced.append(trade.id)
        except WouldTrigger:
            await desk.alert(Level.CRITICAL, f"{trade.symbol}: price is already beyond the stop "
                             f"{trade.stop_price}; closing at market")
            await desk.exit(trade, ExitReason.STOP_LOSS, unprotected=True)
        except ExchangeError as exc:
            await desk.give_up_protecting(trade, exc)

    async def _ensure_take_profit(self, trade: TradeRecord, orders: Sequence[ProtectiveOrder]) -> None:
        if trade.take_profit_price is None or any(
                o.kind is ProtectiveKind.TAKE_PROFIT and o.status.is_open for o in orders):
            return
        await self._expire_records(trade, OrderPurpose.TAKE_PROFIT)
        try:
            await self.desk.place_protective(trade, OrderPurpose.TAKE_PROFIT, trade.take_profit_price)
        except ExchangeError as exc:
            log.warning("%s: take-profit could not be re-placed: %s", trade.symbol, exc)

    async def _expire_records(self, trade: TradeRecord, purpose: OrderPurpose) -> None:
        """Our rows say open, the exchange says gone: mark them so, before placing a replacement."""
        for order in await self._repos.orders.open_protective(trade.id):
            if order.purpose is purpose:
                await self._repos.orders.update(order.client_id, status=OrderState.EXPIRED, now=self.desk.clock.now())

    async def _adopt(self, position: Position, orders: Sequence[ProtectiveOrder], report: ReconcileReport) -> None:
        """A position we did not open: book it, protect it at the maximum stop distance, tell the operator. A
        stop (or take-profit) already resting on its closing side (the operator's) is kept as its protection:
        Binance holds one close-position order of a kind per side and refuses a second with -4130."""
        desk = self.desk
        rules = desk.rules.get(position.symbol)
        if rules is None:
            await desk.alert(Level.CRITICAL, f"{position.symbol}: unknown position on a symbol without rules; "
                             "close it by hand")
            return
        stop, take = self._adoption_prices(rules, position, position.mark_price)
        resting_stop = next((o for o in orders if rests_for(o, position.side, ProtectiveKind.STOP_LOSS,
                                                             position.mark_price)), None)
        resting_take = next((o for o in orders if rests_for(o, position.side, ProtectiveKind.TAKE_PROFIT,
                                                             position.mark_price)), None)
        if resting_stop is not None:
            stop = resting_stop.trigger_price
        if resting_take is not None:
            take = resting_take.trigger_price
        trade = await self._repos.trades.create(
            mode=desk.mode, symbol=position.symbol, side=position.side.value, quantity=position.quantity,
            stop_price=stop, take_profit_price=take, leverage=position.leverage, score=None, votes=["adopted"],
            now=desk.clock.now(), status=TradeStatus.OPEN, entry_price=position.entry_price)
        for purpose, resting in ((OrderPurpose.STOP_LOSS, resting_stop), (OrderPurpose.TAKE_PROFIT, resting_take)):
            if resting is not None:
                await desk.keep_resting(trade, purpose, resting)
        if resting_stop is not None:
            await desk.alert(Level.WARNING, f"{position.symbol}: found a {position.side.value} position of "
                             f"{position.quantity} not opened by Vigil; adopted it with its resting stop at {stop} "
                             f"({resting_stop.client_id})")
            report.adopted.append(trade.id)
            return
        await desk.alert(Level.WARNING, f"{position.symbol}: found a {position.side.value} position of "
                         f"{position.quantity} not opened by Vigil; adopted it and placing a stop at {stop}")
        window = desk.window()
        while True:
            try:
                await desk.place_protective(trade, OrderPurpose.STOP_LOSS, stop)
                break
            except WouldTrigger as exc:
                # the mark moved past the level meanwhile: place it again from the fresh mark, never through it
                mark = (await desk.exchange.mark_price(position.symbol)).mark_price
                stop, take = self._adoption_prices(rules, position, mark)
                if window.spent:
                    await desk.give_up_protecting(trade, exc)
                    return
                await window.pause()
            except ExchangeError as exc:
                await desk.give_up_protecting(trade, exc)
                return
        if take is not None and resting_take is None:
            try:
                await desk.place_protective(trade, OrderPurpose.TAKE_PROFIT, take)
            except ExchangeError as exc:
                log.warning("%s: take-profit of the adopted position could not be placed: %s", position.symbol, exc)
        report.adopted.append(trade.id)

    def _adoption_prices(self, rules: SymbolRules, position: Position,
                         mark: Decimal) -> tuple[Decimal, Decimal | None]:
        """Stop at the maximum distance from the entry; if the mark is already past that level (an operator's
        position deep under water), the same distance from the mark instead, never through the price. The
        take-profit is left out when the mark is already past it."""
        max_dist = position.entry_price * self.risk.max_stop_pct / Decimal(100)
        atr_equiv = max_dist / self.risk.stop_atr_mult
        stop, take = protective_prices(rules, position.side, position.entry_price, max_dist, atr_equiv, self.risk)
        sign = position.side.sign
        if mark > 0 and (mark - stop) * sign <= 0:
            mark_dist = mark * self.risk.max_stop_pct / Decimal(100)
            stop, _ = protective_prices(rules, position.side, mark, mark_dist, mark_dist / self.risk.stop_atr_mult,
                                        self.risk)
        if mark > 0 and (take - mark) * sign <= 0:
            return stop, None
        return stop, take

    async def _cancel_orphan(self, order: ProtectiveOrder, report: ReconcileReport) -> None:
        if not order.client_id.startswith(self.desk.own_prefix):
            return  # the operator's (or another bot's) order: not Vigil's to cancel
        try:
            await self.desk.exchange.cancel_protective_order(order.symbol, order.client_id)
        except OrderNotFound:
            return
        report.orphans_cancelled.append(order.client_id)
        if await self._repos.orders.get(order.client_id) is not None:
            await self._repos.orders.update(order.client_id, status=OrderState.CANCELED, now=self.desk.clock.now())
        log.info("cancelled orphaned %s %s on %s (no position)", order.kind.value, order.client_id, order.symbol)


def protects(order: ProtectiveOrder, position: Position) -> bool:
    """An open stop on the closing side of ``position``, below a long's mark or above a short's."""
    return rests_for(order, position.side, ProtectiveKind.STOP_LOSS, position.mark_price)
