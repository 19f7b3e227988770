"""The engine façade: every command the operator can give (Telegram, CLI, tests) goes through here.

One command layer shared by every UI; nothing here knows about Telegram. Methods return frozen values
or raise ``CommandRefused`` with a sentence the operator can act on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from engine.events import StateChanged
from engine.exchange.errors import ExchangeError
from engine.exchange.types import Balance
from engine.halts import HaltState, load_halts, save_halts
from engine.trader import HEARTBEAT_KEY, LAST_SCAN_KEY
from storage.records import TradeRecord

if TYPE_CHECKING:
    from engine.runtime import Runtime

log = logging.getLogger(__name__)


class CommandRefused(Exception):
    """The command was not carried out; ``str(exc)`` says why and what to do instead."""


@dataclass(frozen=True, slots=True)
class PositionView:
    trade_id: int
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    stop_price: Decimal
    take_profit_price: Decimal | None
    liquidation_price: Decimal | None
    leverage: int
    opened_at: datetime | None


@dataclass(frozen=True, slots=True)
class StatusReport:
    mode: str
    state: str
    halt_reason: str
    wallet: Decimal
    equity: Decimal
    available: Decimal
    today_realized: Decimal
    positions: tuple[PositionView, ...]
    last_scan: str | None
    next_scan: datetime | None
    last_monitor: str | None
    exchange_error: str = ""


@dataclass(frozen=True, slots=True)
class ModeChange:
    old: str
    new: str
    closed: tuple[TradeRecord, ...] = ()


class EngineService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def _repos(self):  # noqa: ANN202 - shorthand
        return self.runtime.repos

    @property
    def mode(self) -> str:
        return self.runtime.mode

    # ------------------------------------------------------------------ read
    async def status(self) -> StatusReport:
        halts = await load_halts(self._repos.state)
        now = self.runtime.clock.now()
        error = ""
        try:
            balance = await self.balance()
            positions = await self.positions()
        except ExchangeError as exc:
            error = str(exc)
            balance = Balance("USDT", Decimal(0), Decimal(0), Decimal(0))
            positions = []
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = await self._repos.trades.closed(self.mode, since=day_start)
        last_scan = await self._repos.state.get(LAST_SCAN_KEY)
        return StatusReport(
            mode=self.mode, state=halts.label, halt_reason=halts.reason, wallet=balance.wallet_balance,
            equity=balance.equity, available=balance.available_balance,
            today_realized=sum((t.net_pnl for t in today), Decimal(0)), positions=tuple(positions),
            last_scan=last_scan.get("time") if isinstance(last_scan, dict) else None,
            next_scan=self.runtime.next_scan(), last_monitor=await self._repos.state.get(HEARTBEAT_KEY),
            exchange_error=error)

    async def balance(self) -> Balance:
        return await self.runtime.exchange.balance()

    async def positions(self) -> list[PositionView]:
        exchange_positions = {p.symbol: p for p in await self.runtime.exchange.positions()}
        views: list[PositionView] = []
        for trade in await self._repos.trades.active(self.mode):
            pos = exchange_positions.get(trade.symbol)
            if pos is None:
                continue
            views.append(PositionView(
                trade_id=trade.id, symbol=trade.symbol, side=trade.side, quantity=pos.quantity,
                entry_price=pos.entry_price, mark_price=pos.mark_price, unrealized_pnl=pos.unrealized_pnl,
                stop_price=trade.stop_price, take_profit_price=trade.take_profit_price,
                liquidation_price=pos.liquidation_price, leverage=pos.leverage, opened_at=trade.opened_at))
        return views

    async def trades(self, limit: int = 10) -> list[TradeRecord]:
        if limit < 1:
            raise CommandRefused("the number of trades must be at least 1")
        return await self._repos.trades.closed(self.mode, limit=limit)

    async def realized_since(self, days: int) -> list[TradeRecord]:
        if days < 1:
            raise CommandRefused("the number of days must be at least 1")
        since = self.runtime.clock.now() - timedelta(days=days)
        return await self._repos.trades.closed(self.mode, since=since)

    # ------------------------------------------------------------------ halts
    async def pause(self, reason: str = "operator") -> HaltState:
        return await self._set_halts(paused=True, reason=reason, event="paused")

    async def stop(self, reason: str = "operator") -> HaltState:
        return await self._set_halts(stopped=True, reason=reason, event="stopped")

    async def resume(self) -> HaltState:
        now = self.runtime.clock.now()
        halts = HaltState()
        await save_halts(self._repos.state, halts, now)
        await self.runtime.bus.publish(StateChanged(time=now, state="resumed"))
        return halts

    async def kill(self, reason: str = "operator kill-switch") -> list[TradeRecord]:
        """Halt first (so no scan can open anything), then close every position and cancel every order."""
        await self._set_halts(killed=True, reason=reason, event="killed")
        closed = await self.runtime.trader.close_all("kill_switch")
        await self.runtime.trader.reconcile()
        return closed

    async def _set_halts(self, *, reason: str, event: str, paused: bool | None = None,
                         stopped: bool | None = None, killed: bool | None = None) -> HaltState:
        now = self.runtime.clock.now()
        current = await load_halts(self._repos.state)
        halts = replace(
            current,
            paused=current.paused if paused is None else paused,
            stopped=current.stopped if stopped is None else stopped,
            killed=current.killed if killed is None else killed,
            reason=reason, since=now.isoformat())
        await save_halts(self._repos.state, halts, now)
        await self.runtime.bus.publish(StateChanged(time=now, state=event, detail=reason))
        return halts

    # ------------------------------------------------------------------ actions
    async def close(self, symbol: str) -> list[TradeRecord]:
        """Close one symbol's position (``symbol='all'`` closes every position) at market."""
        if symbol.lower() == "all":
            return await self.runtime.trader.close_all("manual_close")
        symbol = symbol.upper()
        active = {t.symbol for t in await self._repos.trades.active(self.mode)}
        if symbol not in active:
            shown = ", ".join(sorted(active)) or "none"
            raise CommandRefused(f"no open position on {symbol}; open positions: {shown}")
        trade = await self.runtime.trader.close_symbol(symbol, "manual_close")
        if trade is None:
            raise CommandRefused(f"{symbol} could not be closed now; its stop-loss stays in place. Try again.")
        return [trade]

    async def scan_now(self) -> None:
        await self.runtime.run_job_now("scan")

    async def set_mode(self, mode: Literal["paper", "live"], *, close_open: bool = False) -> ModeChange:
        """Switch paper/live. Refused while the mode being left has open positions unless ``close_open``."""
        if mode not in ("paper", "live"):
            raise CommandRefused("mode must be paper or live")
        old = self.mode
        if mode == old:
            return ModeChange(old, mode)
        if mode == "live" and not self.runtime.settings.has_binance_keys:
            raise CommandRefused("live trading needs BINANCE_API_KEY and BINANCE_API_SECRET in the environment")
        active = await self._repos.trades.active(old)
        closed: tuple[TradeRecord, ...] = ()
        if active and not close_open:
            raise CommandRefused(f"{len(active)} {old} position(s) still open "
                                 f"({', '.join(t.symbol for t in active)}); close them first or confirm closing")
        if active:
            closed = tuple(await self.runtime.trader.close_all("mode_switch"))
            if await self._repos.trades.active(old):
                raise CommandRefused(f"some {old} positions could not be closed; mode unchanged")
        await self.runtime.switch_mode(mode)
        await self.runtime.bus.publish(StateChanged(time=self.runtime.clock.now(), state=f"mode {mode}",
                                                    detail=f"switched from {old}"))
        return ModeChange(old, mode, closed)
