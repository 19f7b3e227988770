"""Carries out the exit rules of ``engine.policy.exits`` on the exchange, every monitor tick: trailing and
break-even stop moves (cancel + place on the Algo Order API), partial take-profits (reduce-only market
orders), and full exits (time stop, stale trade, signal against). Runs under the trader's lock."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from engine.events import Level, PartialExit, StopMoved
from engine.exchange.errors import ExchangeError, WouldTrigger
from engine.exchange.types import Position, PositionSide
from engine.policy.exits import CloseAll, ClosePartial, ExitConfig, MarketState, MoveStop, PositionState, evaluate_exits
from engine.policy.exits import observe as observe_market
from engine.trading.order_desk import OrderDesk
from storage.records import OrderPurpose, OrderState, TradeRecord, TradeStatus
from strategies.types import Signal

log = logging.getLogger(__name__)


class ExitManager:
    def __init__(self, desk: OrderDesk, config: ExitConfig) -> None:
        self.desk = desk
        self.config = config

    async def manage(self, trades: list[TradeRecord], positions: dict[str, Position],
                     signals: dict[str, Signal]) -> list[str]:
        """Each trade on its own: one that raises is reported (returned) and does not stop the others."""
        failures: list[str] = []
        for trade in trades:
            position = positions.get(trade.symbol)
            if trade.status is TradeStatus.OPEN and position is not None:
                try:
                    await self._manage_one(trade, position, signals.get(trade.symbol))
                except Exception as exc:  # isolation: the other trades must still be trailed and closed
                    log.exception("exit management of %s trade %s failed", trade.symbol, trade.id)
                    failures.append(f"{trade.symbol} trade {trade.id} exits: {exc}")
        return failures

    async def _manage_one(self, trade: TradeRecord, position: Position, signal: Signal | None) -> None:
        desk, now = self.desk, self.desk.clock.now()
        stored = await desk.memory.exit_state(trade.id)
        state = stored or PositionState.opened(
            trade_id=trade.id, symbol=trade.symbol, side=PositionSide(trade.side),
            entry_price=trade.entry_price or position.entry_price, quantity=trade.initial_quantity,
            stop_price=trade.initial_stop_price, opened_at=trade.opened_at or now)
        # the exchange and the order book are the truth: a partial whose answer was lost (and was resolved by
        # reconciliation) counts as done, so a restart never takes the same ladder step twice
        partials = await desk.repos.orders.for_trade(trade.id, OrderPurpose.PARTIAL)
        filled = sum(1 for o in partials if o.status is OrderState.FILLED
                     or (o.status is OrderState.EXPIRED and (o.filled_quantity or 0) > 0))
        state = replace(state, quantity=position.quantity, stop_price=trade.stop_price,
                        partials_done=max(state.partials_done, filled))
        market = MarketState(mark_price=position.mark_price,
                             atr=Decimal(repr(signal.atr)) if signal and signal.atr > 0 else None,
                             consensus=signal.direction if signal else None,
                             consensus_score=signal.score if signal else 0.0)
        actions = evaluate_exits(state, market, self.config, now, rules=desk.rules[trade.symbol])
        before, state = state, observe_market(state, market)
        for action in actions:
            if isinstance(action, CloseAll):
                await desk.exit(trade, action.reason)
                return
            if isinstance(action, ClosePartial):
                filled = await self._close_partial(trade, action.quantity, action.reason)
                if filled is None:
                    break
                state = state.after_partial(filled, action.step)
            elif isinstance(action, MoveStop):
                if not await self.move_stop(trade, action.new_price, action.reason):
                    break
                state = state.with_stop(action.new_price)
            trade = await desk.repos.trades.get(trade.id)
            if trade.status is not TradeStatus.OPEN:
                return
        if state != before or stored is None:
            await desk.memory.save_exit_state(state, now)

    async def move_stop(self, trade: TradeRecord, new_price: Decimal, reason: str) -> bool:
        """Cancel + place (Binance cannot modify a conditional order, nor hold two close-position stops on one
        side). If the new stop cannot be placed the old level is restored at once; if neither can be placed
        the position is closed at market. True if the stop now sits at ``new_price``."""
        desk = self.desk
        old_price = trade.stop_price
        cancelled = await desk.cancel_protective(trade, OrderPurpose.STOP_LOSS)
        if cancelled is OrderState.TRIGGERED:
            return False  # the stop fired meanwhile; reconciliation books the close
        if cancelled is OrderState.OPEN:  # the old stop could not be cancelled: it still protects, unmoved
            await desk.alert(Level.WARNING, f"{trade.symbol}: stop could not be moved to {new_price} (the old "
                             f"one could not be cancelled); it stays at {old_price}")
            return False
        try:
            placed = await desk.place_protective(trade, OrderPurpose.STOP_LOSS, new_price)
        except WouldTrigger:  # the old stop is cancelled: none stands
            await desk.exit(trade, reason, unprotected=True)
            return False
        except ExchangeError as exc:
            try:
                await desk.place_protective(trade, OrderPurpose.STOP_LOSS, old_price)
            except ExchangeError:
                await desk.alert(Level.CRITICAL, f"{trade.symbol}: stop could not be moved ({exc}) nor restored; "
                                 "closing the position at market")
                await desk.exit(trade, "stop_unplaceable", unprotected=True)
                return False
            await desk.alert(Level.WARNING, f"{trade.symbol}: stop could not be moved to {new_price} ({exc}); "
                             f"it stays at {old_price}")
            return False
        if placed.trigger_price != new_price:  # -4130: another stop rests on that side; it is the protection now
            return False
        await desk.bus.publish(StopMoved(time=desk.clock.now(), trade_id=trade.id, symbol=trade.symbol,
                                         old_stop=old_price, new_stop=new_price, reason=reason))
        return True

    async def _close_partial(self, trade: TradeRecord, quantity: Decimal, reason: str) -> Decimal | None:
        desk = self.desk
        side = PositionSide(trade.side)
        result = await desk.market_order(trade, OrderPurpose.PARTIAL, side.exit_side, quantity, reduce_only=True,
                                         reason=reason)
        if result is None or result.filled_quantity <= 0:
            return None  # an EXPIRED order with an executed quantity counts: that part is closed
        filled = result.filled_quantity
        await desk.repos.trades.update_quantity(trade.id, max(trade.quantity - filled, Decimal(0)), desk.clock.now())
        pnl = (result.avg_price - (trade.entry_price or result.avg_price)) * filled * side.sign
        await desk.bus.publish(PartialExit(time=desk.clock.now(), trade_id=trade.id, symbol=trade.symbol,
                                           quantity=filled, price=result.avg_price, realized_pnl=pnl, reason=reason))
        return filled
