"""The order desk: every order the engine sends goes through here, intent first (invariant 2), and every
position that disappears is booked here from the exchange's own fills and funding (invariant 3).

Used by the trader (entries, closes), the reconciler (recovery) and the exit manager (stop moves, partial
exits). It holds no policy: what to trade and when is decided by its callers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.clock import Clock
from core.enums import ExitReason
from engine.events import Alert, EventBus, Level, TradeClosed, TradeOpened
from engine.exchange.errors import (
    ExchangeError,
    FilterViolation,
    InsufficientMargin,
    MinNotionalError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    ProtectionExists,
    RateLimited,
)
from engine.exchange.protocol import Exchange
from engine.exchange.rules import round_price
from engine.exchange.types import (
    Fill,
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
from engine.policy.booking import book, protective_exit_reason
from engine.policy.exits import PositionState
from engine.retrying import RetryBudget, RetryWindow, Sleep, worth_retrying
from engine.trading.trade_memory import TradeMemory
from storage.records import OrderPurpose, OrderState, TradeRecord
from storage.repositories import Repositories

log = logging.getLogger(__name__)

FILL_LOOKBACK = timedelta(seconds=5)
LIQUIDATION_TOLERANCE = Decimal("0.005")
PRICE_QUANTUM = Decimal("0.00000001")  # average exit prices over several fills are kept to 8 decimals
RULES_MAX_AGE = timedelta(days=1)
# userTrades can lag a fill by a moment: a close is booked once its exit fills add up to the position, or after
# this long with what there is (and an alert)
BOOKING_WAIT = timedelta(minutes=10)
FEE_PRICE_INTERVAL = "5m"  # a commission paid in BNB is valued at the open of the 5m candle of its fill

KIND_OF = {OrderPurpose.STOP_LOSS: ProtectiveKind.STOP_LOSS, OrderPurpose.TAKE_PROFIT: ProtectiveKind.TAKE_PROFIT}

ClosedHook = Callable[[TradeRecord, TradeClosed], Awaitable[None]]
PricesAt = Callable[[Decimal], tuple[Decimal, Decimal]]


class OrderDesk:
    def __init__(self, *, exchange: Exchange, repos: Repositories, bus: EventBus, clock: Clock, mode: str,
                 memory: TradeMemory, sleep: Sleep | None = None, retry: RetryBudget | None = None) -> None:
        self.exchange = exchange
        self.sleep = sleep
        self.retry = retry or RetryBudget()
        self.repos = repos
        self.bus = bus
        self.clock = clock
        self.mode = mode
        self.memory = memory
        self.rules: dict[str, SymbolRules] = {}
        self.on_trade_closed: ClosedHook | None = None
        self._instance = ""
        self._rules_at: datetime | None = None
        self._booking_since: dict[int, datetime] = {}

    async def start(self) -> None:
        self._instance = await self.repos.state.instance_id(self.clock.now())
        await self.refresh_rules()

    async def refresh_rules(self, *, force: bool = True) -> None:
        """Reload the symbol filters (daily, and at once after an order broke one: Binance changes them)."""
        if not force and self._rules_at is not None and self.clock.now() - self._rules_at < RULES_MAX_AGE:
            return
        self.rules = await self.exchange.symbol_rules()
        self._rules_at = self.clock.now()

    async def _after_rejection(self, exc: ExchangeError) -> None:
        if isinstance(exc, FilterViolation | MinNotionalError):
            log.warning("%s; reloading the symbol filters", exc)
            try:
                await self.refresh_rules()
            except ExchangeError as reload_exc:
                log.warning("symbol filters could not be reloaded now: %s", reload_exc)
                self._rules_at = None

    @property
    def own_prefix(self) -> str:
        """Every client id Vigil (this database) sends starts with this."""
        return f"vg{self._instance}-"

    def window(self) -> RetryWindow:
        return RetryWindow(self.retry, self.clock, self.sleep)

    def client_id(self, trade_id: int, purpose: OrderPurpose, attempt: int) -> str:
        """Deterministic, ≤ 36 chars of Binance's allowed alphabet: ``vg<inst>-<trade>-<P><attempt>``."""
        return f"vg{self._instance}-{trade_id}-{purpose.code}{attempt}"

    async def next_attempt(self, trade_id: int, purpose: OrderPurpose) -> int:
        return len(await self.repos.orders.for_trade(trade_id, purpose)) + 1

    async def alert(self, level: Level, message: str) -> None:
        log.log(logging.CRITICAL if level is Level.CRITICAL else logging.WARNING, message)
        await self.bus.publish(Alert(time=self.clock.now(), level=level, message=message))

    async def position(self, symbol: str) -> Position | None:
        for pos in await self.exchange.positions():
            if pos.symbol == symbol:
                return pos
        return None

    # ------------------------------------------------------------------ market orders
    async def market_order(self, trade: TradeRecord, purpose: OrderPurpose, side: Side, quantity: Decimal, *,
                           reduce_only: bool, reason: str | None = None) -> OrderResult | None:
        """Record the intent (next attempt of ``purpose``), then send. ``None`` = outcome still unknown."""
        cid = self.client_id(trade.id, purpose, await self.next_attempt(trade.id, purpose))
        await self.repos.orders.record_intent(
            client_id=cid, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=purpose,
            side=side.value, order_type="MARKET", quantity=quantity, trigger_price=None, reduce_only=reduce_only,
            now=self.clock.now(), reason=reason)
        return await self.send_market(trade.symbol, side, quantity, cid, reduce_only=reduce_only)

    async def send_market(self, symbol: str, side: Side, quantity: Decimal, cid: str, *,
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
                await self.alert(Level.WARNING, f"{symbol}: order {cid} outcome unknown ({exc.reason}); "
                                 "it will be resolved by querying the exchange on the next monitor tick")
                return None
        except OrderRejected as exc:
            await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(), error=str(exc))
            log.info("order %s rejected: %s", cid, exc)
            await self._after_rejection(exc)
            if reduce_only or isinstance(exc, InsufficientMargin):
                await self.alert(Level.WARNING, f"{symbol}: order {cid} rejected by the exchange: {exc}")
            return self._refused(symbol, cid, side, quantity, reduce_only)
        except ExchangeError as exc:
            # transient failures surface here only after the adapter's own retries; the request was refused
            await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(), error=str(exc))
            await self.alert(Level.WARNING, f"{symbol}: order {cid} failed: {exc}")
            return self._refused(symbol, cid, side, quantity, reduce_only)
        await self.record_order_result(result)
        return result

    def _refused(self, symbol: str, cid: str, side: Side, quantity: Decimal, reduce_only: bool) -> OrderResult:
        return OrderResult(symbol, cid, "", side, OrderStatus.REJECTED, quantity, Decimal(0), Decimal(0),
                           reduce_only, self.clock.now())

    async def record_order_result(self, result: OrderResult) -> None:
        state = {
            OrderStatus.FILLED: OrderState.FILLED, OrderStatus.CANCELED: OrderState.CANCELED,
            OrderStatus.REJECTED: OrderState.REJECTED, OrderStatus.EXPIRED: OrderState.EXPIRED,
        }.get(result.status, OrderState.OPEN)
        await self.repos.orders.update(result.client_id, status=state, now=self.clock.now(),
                                       exchange_id=result.exchange_id or None,
                                       filled_quantity=result.filled_quantity,
                                       avg_price=result.avg_price if result.filled_quantity > 0 else None,
                                       fee=result.fee)

    # ------------------------------------------------------------------ protection
    async def open_protected(self, trade: TradeRecord, fill: OrderResult, prices_at: PricesAt,
                             score: float | None, *, opened_at: datetime | None = None) -> TradeRecord | None:
        """The entry of ``trade`` filled: book it, place its stop and take-profit, announce it.
        Returns ``None`` if the stop could not be placed (the position was then closed at market)."""
        rules = self.rules[trade.symbol]
        entry = fill.avg_price
        stop, take = prices_at(entry)
        trade = await self.repos.trades.mark_open(
            trade.id, entry_price=entry, quantity=fill.filled_quantity, stop_price=stop,
            take_profit_price=take, liquidation_price=None, fee=fill.fee, now=opened_at or self.clock.now())
        await self.memory.save_exit_state(PositionState.opened(
            trade_id=trade.id, symbol=trade.symbol, side=PositionSide(trade.side), entry_price=entry,
            quantity=fill.filled_quantity, stop_price=stop, opened_at=trade.opened_at or self.clock.now()),
            self.clock.now())
        if not await self.protect(trade, stop, take):  # the stop first: nothing may stand before it
            return None
        liq = await self._liquidation_price(trade.symbol, rules)
        if liq is not None:
            await self.repos.trades.set_liquidation_price(trade.id, liq, self.clock.now())
        trade = await self.repos.trades.get(trade.id)
        await self.bus.publish(TradeOpened(
            time=self.clock.now(), trade_id=trade.id, mode=self.mode, symbol=trade.symbol, side=trade.side,
            quantity=trade.quantity, entry_price=entry, stop_price=stop, take_profit_price=take,
            leverage=trade.leverage, liquidation_price=liq or Decimal(0), fee=fill.fee,
            score=float(score or 0.0), votes=trade.votes))
        return trade

    async def _liquidation_price(self, symbol: str, rules: SymbolRules) -> Decimal | None:
        """The position's liquidation price, or ``None`` if it cannot be read now (never raises: the trade is
        open and protected by then, and a liquidation is still recognised by its ``autoclose-`` fills)."""
        try:
            pos = await self.position(symbol)
        except ExchangeError as exc:
            log.warning("%s: liquidation price not read (%s); the trade stays open without it", symbol, exc)
            return None
        return round_price(rules, pos.liquidation_price) if pos is not None else None

    async def protect(self, trade: TradeRecord, stop: Decimal, take: Decimal | None) -> bool:
        """Place stop then take-profit. If the stop cannot be placed (after retrying for a bounded time), close
        at market. True if protected."""
        try:
            await self.place_protective(trade, OrderPurpose.STOP_LOSS, stop)
        except ExchangeError as exc:
            await self.give_up_protecting(trade, exc)
            return False
        if take is not None:
            try:
                await self.place_protective(trade, OrderPurpose.TAKE_PROFIT, take)
            except ExchangeError as exc:
                await self.alert(Level.WARNING, f"{trade.symbol}: take-profit could not be placed ({exc}); "
                                 "the stop-loss still protects the position")
        return True

    async def give_up_protecting(self, trade: TradeRecord, exc: ExchangeError) -> None:
        await self.alert(Level.CRITICAL, f"{trade.symbol}: stop-loss could not be placed ({exc}) after retrying "
                         f"for {self.retry.total.total_seconds():.0f}s; closing the position at market")
        await self.exit(trade, "stop_unplaceable", unprotected=True)

    async def place_protective(self, trade: TradeRecord, purpose: OrderPurpose, trigger: Decimal, *,
                               reround: bool = True) -> ProtectiveOrder:
        """Place a close-position stop or take-profit, retrying refusals that may pass a moment later (-4509,
        429, 5xx, lost answers) for a bounded time; before every retry the client id is queried, so a request
        that did land is never sent twice. A filter refusal (-4014, -1111: Binance changed the tick size) reloads
        the filters and sends it once more on the new grid (``reround``). Raises the last error when it cannot
        be placed."""
        side = PositionSide(trade.side).exit_side
        cid = self.client_id(trade.id, purpose, await self.next_attempt(trade.id, purpose))
        kind = KIND_OF[purpose]
        await self.repos.orders.record_intent(
            client_id=cid, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=purpose,
            side=side.value, order_type=kind.value, quantity=None, trigger_price=trigger, reduce_only=True,
            now=self.clock.now())
        window = self.window()
        while True:
            try:
                order = await self.exchange.place_protective_order(trade.symbol, side, kind, trigger, cid)
                break
            except ProtectionExists as exc:  # -4130: one already rests on this side (ours or the operator's)
                try:
                    resting = await self.resting_protection(trade, kind)
                except ExchangeError as read_exc:
                    log.warning("%s: %s; its open algo orders could not be read (%s)", trade.symbol, exc, read_exc)
                    resting = None
                if resting is not None:
                    order = resting
                    break
                if window.spent:  # none found that protects (one triggering, or the list lagging): try again
                    await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(),
                                                   error=str(exc))
                    raise
                await window.pause()
            except ExchangeError as exc:
                duplicate = isinstance(exc, OrderRejected) and exc.code == -4116  # an earlier try did land
                if not (duplicate or worth_retrying(exc)):
                    await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(),
                                                   error=str(exc))
                    await self._after_rejection(exc)
                    if reround and isinstance(exc, FilterViolation) \
                            and (regridded := self._on_grid(trade, trigger)) != trigger:
                        log.warning("%s: %s refused (%s); sending it again at %s on the new tick grid",
                                    trade.symbol, cid, exc, regridded)
                        return await self.place_protective(trade, purpose, regridded, reround=False)
                    raise
                if isinstance(exc, RateLimited) and exc.retry_after:
                    window.cooldown(exc.retry_after)  # the window lasts past it, with one more try after it
                found = await self._query_protective(trade.symbol, cid)
                if found is not None and found.status is not ProtectiveStatus.REJECTED:
                    order = found
                    break
                if window.spent:
                    state = OrderState.UNKNOWN if isinstance(exc, OrderStatusUnknown) else OrderState.REJECTED
                    await self.repos.orders.update(cid, status=state, now=self.clock.now(), error=str(exc))
                    raise
                log.warning("%s: %s could not be placed yet (%s); retrying", trade.symbol, cid, exc)
                await window.pause()
        if order.client_id != cid:
            await self._record_resting(trade, purpose, cid, order, trigger)
        await self.repos.orders.update(order.client_id, status=order_state_of(order), now=self.clock.now(),
                                       exchange_id=order.exchange_id)
        if purpose is OrderPurpose.STOP_LOSS:
            await self.repos.trades.update_protection(trade.id, stop_price=order.trigger_price, now=self.clock.now())
        else:
            await self.repos.trades.update_protection(trade.id, take_profit_price=order.trigger_price,
                                                      now=self.clock.now())
        return order

    def _on_grid(self, trade: TradeRecord, trigger: Decimal) -> Decimal:
        """``trigger`` on the symbol's (reloaded) tick grid, floored for a long and ceiled for a short as
        ``protective_prices`` rounds: a stop never moves closer to the price."""
        side = PositionSide(trade.side)
        return round_price(self.rules[trade.symbol], trigger,
                           rounding=ROUND_FLOOR if side is PositionSide.LONG else ROUND_CEILING)

    async def resting_protection(self, trade: TradeRecord, kind: ProtectiveKind) -> ProtectiveOrder | None:
        """An open close-position order of ``kind`` already on the exchange for ``trade``'s position: on its
        closing side and on the protective side of the mark (a stop below a long's mark, a take-profit above
        it). Vigil's own or the operator's: Binance holds one per side, so that one is the protection."""
        side = PositionSide(trade.side)
        orders = await self.exchange.open_protective_orders(trade.symbol)
        mark = (await self.exchange.mark_price(trade.symbol)).mark_price
        return next((o for o in orders if rests_for(o, side, kind, mark)), None)

    async def _record_resting(self, trade: TradeRecord, purpose: OrderPurpose, cid: str, order: ProtectiveOrder,
                              wanted: Decimal) -> None:
        """Binance refused ``cid`` because ``order`` already rests on that side: book that one as the trade's."""
        what = "stop-loss" if purpose is OrderPurpose.STOP_LOSS else "take-profit"
        await self.repos.orders.update(cid, status=OrderState.REJECTED, now=self.clock.now(),
                                       error=f"-4130: {order.client_id} already rests on this side")
        await self.keep_resting(trade, purpose, order)
        await self.alert(Level.WARNING, f"{trade.symbol}: a {what} already rests on the exchange at "
                         f"{order.trigger_price} ({order.client_id}); Binance holds one per side, so Vigil keeps it "
                         f"as this position's {what} instead of placing its own at {wanted}")

    async def keep_resting(self, trade: TradeRecord, purpose: OrderPurpose, order: ProtectiveOrder) -> None:
        """Book an order already resting on the exchange (the operator's, or an earlier one of Vigil's) as
        ``trade``'s: it is then cancelled when the trade ends or its stop moves, like one Vigil placed."""
        await self.repos.orders.record_intent(
            client_id=order.client_id, trade_id=trade.id, mode=self.mode, symbol=trade.symbol, purpose=purpose,
            side=order.side.value, order_type=order.kind.value, quantity=None, trigger_price=order.trigger_price,
            reduce_only=True, now=self.clock.now())
        await self.repos.orders.update(order.client_id, status=order_state_of(order), now=self.clock.now(),
                                       exchange_id=order.exchange_id)

    async def _query_protective(self, symbol: str, cid: str) -> ProtectiveOrder | None:
        try:
            return await self.exchange.get_protective_order(symbol, cid)
        except ExchangeError as exc:
            log.warning("query of %s failed: %s", cid, exc)
            return None

    async def cancel_protective(self, trade: TradeRecord, purpose: OrderPurpose | None = None) -> OrderState | None:
        """Cancel the trade's open protective orders (of one ``purpose``, or all). Returns TRIGGERED if one
        of them had already fired, else OPEN if one could not be cancelled (it still stands), else the last
        state recorded."""
        states: list[OrderState] = []
        for order in await self.repos.orders.open_protective(trade.id):
            if purpose is not None and order.purpose is not purpose:
                continue
            state = await self.cancel_one(trade.symbol, order.client_id)
            await self.repos.orders.update(order.client_id, status=state, now=self.clock.now())
            states.append(state)
        for worst in (OrderState.TRIGGERED, OrderState.OPEN):
            if worst in states:
                return worst
        return states[-1] if states else None

    async def cancel_one(self, symbol: str, cid: str) -> OrderState:
        """Cancel one conditional order and say what became of it. An answer that is not definite (a lost
        answer, an unexpected code) is resolved by querying ``clientAlgoId``, retrying for a bounded time;
        OPEN means it still stands."""
        window = self.window()
        while True:
            try:
                await self.exchange.cancel_protective_order(symbol, cid)
                return OrderState.CANCELED
            except OrderNotFound:
                found = await self._query_protective(symbol, cid)
                if found is None or not found.status.is_open:
                    return order_state_of(found) if found is not None else OrderState.EXPIRED
            except ExchangeError as exc:
                log.warning("cancel of %s had no definite answer (%s); querying it", cid, exc)
                found = await self._query_protective(symbol, cid)
                if found is not None and not found.status.is_open:
                    return order_state_of(found)
            if window.spent:
                log.warning("%s on %s could not be cancelled; it stays open", cid, symbol)
                return OrderState.OPEN
            await window.pause()

    # ------------------------------------------------------------------ closing and booking
    async def exit(self, trade: TradeRecord, reason: str, *, unprotected: bool = False) -> TradeRecord | None:
        """Market-close the position of ``trade`` (reduce-only), cancel its protective orders, book it.
        ``unprotected``: no stop stands on the exchange (it could not be placed), so a refused close is sent
        again for a bounded time, and if it never goes through the alert says the position has no stop."""
        position = await self.position(trade.symbol)
        if position is None:  # already closed on the exchange (a stop fired, a liquidation, a hand): say which
            reason = await self.exit_reason(trade)
        else:
            window = self.window()
            while True:
                result = await self.market_order(trade, OrderPurpose.EXIT, position.side.exit_side,
                                                 position.quantity, reduce_only=True, reason=reason)
                if result is not None and result.status is OrderStatus.FILLED:
                    break
                if (position := await self.position(trade.symbol)) is None:  # a stop beat our close, or a lost
                    return None  # answer did close it: reconciliation books it
                if not unprotected or window.spent:
                    await self.alert(Level.CRITICAL, _close_failed(trade.symbol, unprotected))
                    return None
                await window.pause()
        await self.cancel_protective(trade)
        window = self.window()  # our own close just filled: its fills show in userTrades within moments
        while (booked := await self.book_close(trade, reason)) is None and not window.spent:
            await window.pause()
        return booked

    async def exit_reason(self, trade: TradeRecord) -> str:
        """Why the position of ``trade`` is gone: our own exit (whose answer may have been lost), its stop
        (initial or trailed) or take-profit, a liquidation, or a hand on the account."""
        for order in await self.repos.orders.for_trade(trade.id, OrderPurpose.EXIT):
            if order.status is OrderState.FILLED:
                return order.reason or "manual_close"
        for order in await self.repos.orders.for_trade(trade.id):
            if order.purpose not in KIND_OF or order.status not in (
                    OrderState.OPEN, OrderState.INTENT, OrderState.UNKNOWN, OrderState.TRIGGERED):
                continue
            if order.status is not OrderState.TRIGGERED:
                found = await self.exchange.get_protective_order(trade.symbol, order.client_id)
                if found is None or found.status not in (ProtectiveStatus.TRIGGERED, ProtectiveStatus.FINISHED):
                    continue
                await self.repos.orders.update(order.client_id, status=OrderState.TRIGGERED, now=self.clock.now())
            return protective_exit_reason(order.purpose is OrderPurpose.TAKE_PROFIT, order.trigger_price,
                                          trade.initial_stop_price)
        since = trade.created_at - FILL_LOOKBACK
        exits = [f for f in await self.exchange.fills(trade.symbol, since)
                 if f.side is PositionSide(trade.side).exit_side]
        if exits and (exits[-1].client_id or "").startswith("adl_autoclose"):
            return "adl"  # auto-deleveraging: Binance names the order adl_autoclose
        if exits and (exits[-1].client_id or "").startswith("autoclose-"):
            return ExitReason.LIQUIDATION  # Binance names liquidation orders autoclose-…
        liq = trade.liquidation_price
        if exits and liq and abs(exits[-1].price - liq) / liq <= LIQUIDATION_TOLERANCE:
            return ExitReason.LIQUIDATION
        return ExitReason.MANUAL

    async def book_close(self, trade: TradeRecord, reason: str) -> TradeRecord | None:
        """Book a trade whose position is gone, from the exchange's own fills and funding payments. ``None``
        while the exit fills do not add up to the position yet (userTrades lags a fill by a moment): the
        caller's next monitor tick books it."""
        # from the intent (before the entry was sent), minus clock skew; fills already booked to another trade
        # (a previous trade's exit moments before this one's intent) are not ours
        since = trade.created_at - FILL_LOOKBACK
        others = await self.repos.ledger.fill_ids_of_other_trades(self.mode, trade.symbol, trade.id, since)
        fills = [f for f in await self.exchange.fills(trade.symbol, since)
                 if f.time >= since and f.trade_id not in others]
        exits = [f for f in fills if f.side is PositionSide(trade.side).exit_side]
        exit_qty = sum((f.quantity for f in exits), Decimal(0))
        if exit_qty < trade.initial_quantity and not self._waited_long_enough(trade):
            log.info("%s: exit fills of trade %s add up to %s of %s so far; booking on a later tick", trade.symbol,
                     trade.id, exit_qty, trade.initial_quantity)
            return None
        self._booking_since.pop(trade.id, None)
        if exit_qty < trade.initial_quantity:
            await self.alert(Level.WARNING, f"{trade.symbol}: trade {trade.id} is booked with exit fills for "
                             f"{exit_qty} of {trade.initial_quantity} after waiting {BOOKING_WAIT}; check its P&L")
        fills = [await self._in_usdt(f) for f in fills]
        funding = await self.exchange.funding_payments(trade.symbol, trade.created_at)
        booking = book(PositionSide(trade.side), fills, trade.entry_price or Decimal(0))
        exit_price, realized, fees = booking.exit_price, booking.realized_pnl, booking.fees
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
        if self.on_trade_closed is not None:
            await self.on_trade_closed(booked, event)
        return booked

    def _waited_long_enough(self, trade: TradeRecord) -> bool:
        first = self._booking_since.setdefault(trade.id, self.clock.now())
        return self.clock.now() - first >= BOOKING_WAIT

    async def _in_usdt(self, fill: Fill) -> Fill:
        """A commission paid in another asset (BNB fee discount) valued in USDT at its fill time."""
        if fill.fee_asset in ("USDT", "") or fill.fee == 0:
            return fill
        symbol = f"{fill.fee_asset}USDT"
        bucket = int(fill.time.timestamp() * 1000) // 300_000 * 300_000
        batch = await self.exchange.klines(symbol, FEE_PRICE_INTERVAL, start_ms=bucket, limit=1)
        if len(batch) == 0:
            raise ExchangeError(f"{fill.symbol}: no {symbol} price at {fill.time:%Y-%m-%d %H:%M} to value a "
                                f"{fill.fee_asset} commission; booking is retried on the next tick")
        price = Decimal(repr(float(batch.open[0])))
        return replace(fill, fee=(fill.fee * price).quantize(PRICE_QUANTUM), fee_asset="USDT")

    async def _ledger_fill(self, trade: TradeRecord, fill: Fill) -> None:
        await self.repos.ledger.add_fill(
            mode=self.mode, trade_id=trade.id, order_client_id=fill.client_id, exchange_trade_id=fill.trade_id,
            symbol=fill.symbol, side=fill.side.value, price=fill.price, quantity=fill.quantity, fee=fill.fee,
            realized_pnl=fill.realized_pnl, time=fill.time)


def _close_failed(symbol: str, unprotected: bool) -> str:
    if unprotected:
        return (f"{symbol}: market close failed and the position has NO stop-loss on the exchange; close it by "
                "hand now")
    return f"{symbol}: market close failed; the position stays open with its exchange-side stop. Check the account."


def rests_for(order: ProtectiveOrder, side: PositionSide, kind: ProtectiveKind, mark: Decimal) -> bool:
    """``order`` is an open ``kind`` on the closing side of a ``side`` position, on the protective side of
    ``mark``: a stop below a long's mark (above a short's), a take-profit beyond it."""
    if order.kind is not kind or not order.status.is_open or order.side is not side.exit_side:
        return False
    if mark <= 0:
        return True
    beyond = (order.trigger_price - mark) * side.sign
    return beyond < 0 if kind is ProtectiveKind.STOP_LOSS else beyond > 0


def order_state_of(order: ProtectiveOrder) -> OrderState:
    return {
        ProtectiveStatus.NEW: OrderState.OPEN, ProtectiveStatus.TRIGGERING: OrderState.OPEN,
        ProtectiveStatus.TRIGGERED: OrderState.TRIGGERED, ProtectiveStatus.FINISHED: OrderState.TRIGGERED,
        ProtectiveStatus.CANCELED: OrderState.CANCELED, ProtectiveStatus.REJECTED: OrderState.REJECTED,
        ProtectiveStatus.EXPIRED: OrderState.EXPIRED,
    }[order.status]
