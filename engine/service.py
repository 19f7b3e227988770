"""The engine façade: every command the operator can give (Telegram, CLI, tests) goes through here.

One command layer shared by every UI; nothing here knows about Telegram. Methods return frozen values
or raise ``CommandRefused`` with a sentence the operator can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr, ValidationError

from core.enums import ExitReason, Mode
from engine.blacklist import load_blacklist, save_blacklist
from engine.events import StateChanged
from engine.exchange.errors import ExchangeError
from engine.exchange.types import Balance, PositionSide
from engine.policy.risk import EntryPlan
from engine.results import Period, PeriodResult, TradeStats, period_starts, results_by_period, trade_stats
from engine.trading.halts import HaltState, load_halts, save_halts
from engine.trading.trader import HEARTBEAT_KEY, LAST_SCAN_KEY, EntryRefused
from engine.vote_reports import (
    ModelReport,
    UnknownSymbol,
    WhyReport,
    model_report,
    normalise_symbol,
    why_from_memory,
    why_from_table,
)
from settings import Settings, format_validation_error
from storage.db import Database
from storage.records import EquityPoint, TradeRecord
from strategies.weights import WeightParams

if TYPE_CHECKING:
    from engine.control import RuntimeControl as Runtime

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
        """Halt first (so no scan can open anything), then flatten the whole account: every position on the
        exchange, Vigil's or not, closed; every order, conditional or plain, cancelled. What could not be done is
        alerted (CRITICAL) by the trader; the closes booked are returned."""
        await self._set_halts(killed=True, reason=reason, event="killed")
        report = await self.runtime.trader.flatten_account(ExitReason.KILL_SWITCH)
        await self.runtime.trader.reconcile()
        return report.closed

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
            return await self.runtime.trader.close_all(ExitReason.MANUAL_CLOSE)
        symbol = symbol.upper()
        active = {t.symbol for t in await self._repos.trades.active(self.mode)}
        if symbol not in active:
            shown = ", ".join(sorted(active)) or "none"
            raise CommandRefused(f"no open position on {symbol}; open positions: {shown}")
        trade = await self.runtime.trader.close_symbol(symbol, ExitReason.MANUAL_CLOSE)
        if trade is None:
            raise CommandRefused(f"{symbol} could not be closed now; its stop-loss stays in place. Try again.")
        return [trade]

    async def preview_entry(self, symbol: str, side: str) -> EntryPlan:
        """How a manual entry would be sized and protected now (nothing is sent)."""
        try:
            return await self.runtime.trader.plan_manual(symbol.upper(), _side(side))
        except EntryRefused as exc:
            raise CommandRefused(f"{symbol.upper()} {side.upper()} refused: {exc}") from None

    async def open_position(self, symbol: str, side: str) -> TradeRecord:
        """Open a position by hand, with the scan's checks, sizing and protection (after the operator confirmed)."""
        try:
            return await self.runtime.trader.open_manual(symbol.upper(), _side(side))
        except EntryRefused as exc:
            raise CommandRefused(f"{symbol.upper()} {side.upper()} not opened: {exc}") from None

    async def blacklist(self) -> list[str]:
        return sorted(await load_blacklist(self._repos.state))

    async def blacklist_add(self, symbol: str) -> list[str]:
        """Never trade ``symbol`` again (until removed); an open position on it stays managed."""
        symbol = symbol.upper()
        if not self.runtime.trader.knows_symbol(symbol):
            raise CommandRefused(f"{symbol} is not a symbol of this exchange")
        current = await load_blacklist(self._repos.state)
        await save_blacklist(self._repos.state, current | {symbol}, self.runtime.clock.now())
        log.info("symbol %s blacklisted by the operator", symbol)
        return sorted(current | {symbol})

    async def blacklist_remove(self, symbol: str) -> list[str]:
        symbol = symbol.upper()
        current = await load_blacklist(self._repos.state)
        if symbol not in current:
            raise CommandRefused(f"{symbol} is not blacklisted; blacklisted: {', '.join(sorted(current)) or 'none'}")
        await save_blacklist(self._repos.state, current - {symbol}, self.runtime.clock.now())
        log.info("symbol %s removed from the blacklist", symbol)
        return sorted(current - {symbol})

    async def scan_now(self) -> None:
        await self.runtime.run_job_now("scan")

    async def set_mode(self, mode: Literal["paper", "live"], *, close_open: bool = False) -> ModeChange:
        """Switch paper/live. Refused while the mode being left has open positions unless ``close_open``."""
        if mode not in tuple(Mode):
            raise CommandRefused("mode must be paper or live")
        mode = Mode(mode)
        old = self.mode
        if mode == old:
            return ModeChange(old, mode)
        if mode == Mode.LIVE and not self.runtime.settings.has_binance_keys:
            raise CommandRefused("live trading needs BINANCE_API_KEY and BINANCE_API_SECRET in the environment")
        active = await self._repos.trades.active(old)
        closed: tuple[TradeRecord, ...] = ()
        if active and not close_open:
            raise CommandRefused(f"{len(active)} {old} position(s) still open "
                                 f"({', '.join(t.symbol for t in active)}); close them first or confirm closing")
        if active:
            closed = tuple(await self.runtime.trader.close_all(ExitReason.MODE_SWITCH))
            if await self._repos.trades.active(old):
                raise CommandRefused(f"some {old} positions could not be closed; mode unchanged")
        await self.runtime.switch_mode(mode)
        await self.runtime.bus.publish(StateChanged(time=self.runtime.clock.now(), state=f"mode {mode}",
                                                    detail=f"switched from {old}"))
        return ModeChange(old, mode, closed)

    # ------------------------------------------------------------------ operator UI helpers (Telegram)
    def now(self) -> datetime:
        return self.runtime.clock.now()

    @property
    def database(self) -> Database:
        """The database, for the UI's own tables (notification queue, confirmations)."""
        return self._repos.db

    async def last_scan(self) -> dict[str, Any] | None:
        """What the last scan stored: time, symbols, signals, opened, halted."""
        value = await self._repos.state.get(LAST_SCAN_KEY)
        return value if isinstance(value, dict) else None

    async def why(self, symbol: str) -> WhyReport:
        """The last votes on ``symbol``: the latest scan from memory, else the latest stored one."""
        try:
            symbol = normalise_symbol(symbol)
        except UnknownSymbol as exc:
            raise CommandRefused(str(exc)) from None
        trader = self.runtime.trader
        found = why_from_memory(trader.vote_log, symbol) or await why_from_table(self._repos.votes, symbol)
        if found is not None:
            return found
        if not trader.knows_symbol(symbol):
            raise CommandRefused(f"{symbol} is not a USDⓈ-M perpetual on this exchange; check the spelling")
        days = self.runtime.settings.votes_retention_days
        raise CommandRefused(f"no votes on {symbol}: it was not in the last scan and no vote on it is stored "
                             f"(votes are kept {days} days); /scan runs a scan now")

    async def model(self) -> ModelReport:
        """The model file and its out-of-sample figures, its live hit rate, and the learned voter weights."""
        settings = self.runtime.settings
        trader = self.runtime.trader
        panel = tuple(v.name for v in trader.consensus.voters) + tuple(v.name for v in (trader.llm.voters
                                                                                          if trader.llm else ()))
        params = trader.vote_log.config.weights if trader.vote_log is not None else WeightParams()
        return await model_report(settings.models_dir, self._repos.votes, panel,
                                  live_window=settings.model_live_window, params=params,
                                  learned_weights=settings.learned_weights)

    async def breakers(self) -> list[BreakerView]:
        """Every circuit breaker with its state, threshold and reset rule, tripped ones first.

        Read from the trader's breaker board; a trader without one falls back to the persisted
        BreakerTripped/BreakerReset events."""
        board = getattr(self.runtime.trader, "breakers", None)
        if board is not None:
            views = [BreakerView(b.name, b.tripped, b.reason, b.since, b.until, b.threshold, b.reset_rule)
                     for b in await board.states(self.runtime.clock.now())]
        else:
            latest: dict[str, BreakerView] = {}
            for time, kind, payload in reversed(await self._repos.events.recent(500)):
                if kind in ("BreakerTripped", "BreakerReset") and "breaker" in payload:
                    latest[payload["breaker"]] = BreakerView(payload["breaker"], kind == "BreakerTripped",
                                                             str(payload.get("reason", "")), time)
            views = list(latest.values())
        return sorted(views, key=lambda b: not b.tripped)

    async def reset_breakers(self) -> list[str]:
        """Reset every tripped breaker, the drawdown one included (operator decision); publishes the resets."""
        board = getattr(self.runtime.trader, "breakers", None)
        if board is None:
            raise CommandRefused("this engine has no circuit breakers to reset")
        events = await board.reset("all", by_operator=True, now=self.runtime.clock.now())
        for event in events:
            await self.runtime.bus.publish(event)
        return [event.breaker for event in events]

    async def open_symbols(self) -> list[str]:
        """Symbols with an active trade in the current mode, from the books (no exchange call)."""
        return [t.symbol for t in await self._repos.trades.active(self.mode)]

    async def performance(self) -> PerformanceReport:
        """Realised results of every closed trade in the current mode, in total and per symbol."""
        return performance_of(await self._repos.trades.closed(self.mode))

    async def results_by_period(self, period: Period, count: int) -> list[PeriodResult]:
        """Realised P&L of the last ``count`` days, weeks or months (the current one included), newest first."""
        if count < 1:
            raise CommandRefused("the number of periods must be at least 1")
        now = self.runtime.clock.now()
        oldest = period_starts(now, period, count)[-1]
        since = datetime.combine(oldest, datetime.min.time(), tzinfo=now.tzinfo)
        return results_by_period(await self._repos.trades.closed(self.mode, since=since), now, period, count)

    async def trade_stats(self) -> TradeStats:
        """Exit reasons, sides and durations of every closed trade in the current mode."""
        return trade_stats(await self._repos.trades.closed(self.mode))

    async def trade(self, trade_id: int) -> TradeRecord | None:
        try:
            return await self._repos.trades.get(trade_id)
        except KeyError:
            return None

    async def equity_series(self, days: int) -> list[EquityPoint]:
        if days < 1:
            raise CommandRefused("the number of days must be at least 1")
        since = self.runtime.clock.now() - timedelta(days=days)
        return await self._repos.equity.series(self.mode, since=since)

    async def health(self) -> HealthReport:
        """When the scan and the monitor last ran, against their intervals (a job is late after 2 intervals
        plus a minute: one missed run is tolerated, a stuck job is not)."""
        now = self.runtime.clock.now()
        settings = self.runtime.settings
        last_scan = await self.last_scan()
        heartbeat = await self._repos.state.get(HEARTBEAT_KEY)
        jobs = (JobHealth.of("scan", _parse_time((last_scan or {}).get("time")), settings.scan_interval_seconds, now),
                JobHealth.of("monitor", _parse_time(heartbeat), settings.monitor_interval_seconds, now))
        return HealthReport(now, jobs, self.runtime.next_scan())

    def redact(self, text: str) -> str:
        """``text`` with every secret setting's value masked (for texts read back from files, e.g. /logs)."""
        settings = self.runtime.settings
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr) and len(secret := value.get_secret_value()) >= 6:
                text = text.replace(secret, "[REDACTED]")
        return text

    def config(self) -> dict[str, str]:
        """Every setting as text with secrets redacted (invariant 8)."""
        return self.runtime.settings.redacted()

    async def check_mode_switch(self, mode: str) -> None:
        """Raise ``CommandRefused`` for what ``set_mode`` would refuse, before asking for a confirmation."""
        if mode not in tuple(Mode):
            raise CommandRefused("mode must be paper or live")
        if mode == self.mode:
            return
        if mode == Mode.LIVE and not self.runtime.settings.has_binance_keys:
            raise CommandRefused("live trading needs BINANCE_API_KEY and BINANCE_API_SECRET in the environment")
        active = await self._repos.trades.active(self.mode)
        if active:
            raise CommandRefused(f"{len(active)} {self.mode} position(s) still open "
                                 f"({', '.join(t.symbol for t in active)}); close them first")

    async def preview_setting(self, key: str, value: str) -> SettingChange:
        """Validate a change of a whitelisted setting without applying it."""
        spec, new = self._validated(key, value)
        return self._change(spec, new)

    async def set_setting(self, key: str, value: str) -> SettingChange:
        """Validate, apply to the running trader and store (re-applied at start) a whitelisted setting."""
        spec, new = self._validated(key, value)
        change = self._change(spec, new)
        self._apply_settings(new)
        stored = dict(await self._repos.state.get(SETTING_OVERRIDES_KEY) or {})
        stored[change.key] = change.new
        await self._repos.state.set(SETTING_OVERRIDES_KEY, stored, self.runtime.clock.now())
        log.info("setting %s changed from %s to %s", change.key, change.old, change.new)
        return change

    async def apply_stored_settings(self) -> dict[str, str]:
        """Re-apply the settings changed at runtime (``set_setting``); invalid stored values are skipped."""
        stored = await self._repos.state.get(SETTING_OVERRIDES_KEY) or {}
        applied: dict[str, str] = {}
        for key, value in stored.items():
            try:
                _, new = self._validated(key, str(value))
            except CommandRefused as exc:
                log.warning("ignoring stored setting %s: %s", key, exc)
                continue
            self._apply_settings(new)
            applied[key] = str(value)
        return applied

    def _validated(self, key: str, value: str) -> tuple[SettableSetting, Settings]:
        spec = SETTABLE_BY_KEY.get(key.upper())
        if spec is None and key.upper() in AT_START_ONLY:
            raise CommandRefused(f"{key.upper()} {AT_START_ONLY[key.upper()]}: change it in .env and restart Vigil")
        if spec is None:
            raise CommandRefused(f"{key} cannot be changed at runtime; these can: {', '.join(SETTABLE_BY_KEY)}")
        current = self.runtime.settings
        data: dict[str, Any] = {name: getattr(current, name) for name in type(current).model_fields}
        data[spec.key.lower()] = value.strip()
        try:
            return spec, type(current).model_validate(data)
        except ValidationError as exc:
            raise CommandRefused("; ".join(format_validation_error(exc))) from None

    def _change(self, spec: SettableSetting, new: Settings) -> SettingChange:
        field = spec.key.lower()
        old_value, new_value = getattr(self.runtime.settings, field), getattr(new, field)
        risky = spec.risky_above is not None and Decimal(str(new_value)) > spec.risky_above
        return SettingChange(spec.key, str(old_value), str(new_value), risky, spec.applies)

    def _apply_settings(self, new: Settings) -> None:
        self.runtime.apply_settings(new)


def _side(side: str) -> PositionSide:
    try:
        return PositionSide(side.upper())
    except ValueError:
        raise CommandRefused("side must be LONG or SHORT") from None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class JobHealth:
    name: str
    last: datetime | None
    interval_seconds: int
    healthy: bool

    @classmethod
    def of(cls, name: str, last: datetime | None, interval_seconds: int, now: datetime) -> JobHealth:
        limit = timedelta(seconds=2 * interval_seconds + 60)
        return cls(name, last, interval_seconds, last is not None and now - last <= limit)


@dataclass(frozen=True, slots=True)
class HealthReport:
    now: datetime
    jobs: tuple[JobHealth, ...]
    next_scan: datetime | None


SETTING_OVERRIDES_KEY = "setting_overrides"
ENTRIES = "new entries"
NEXT_SCAN = "the next scan"  # the panel's gates and the ML voter's threshold (``Runtime.apply_settings``)


@dataclass(frozen=True, slots=True)
class SettableSetting:
    key: str
    meaning: str
    risky_above: Decimal | None = None
    applies: str = ENTRIES  # from when a change takes effect (the /set reply says it)


SETTABLE: tuple[SettableSetting, ...] = (
    SettableSetting("RISK_PER_TRADE_PCT", "% of equity risked per trade", Decimal(2)),
    SettableSetting("LEVERAGE", "leverage of new positions", Decimal(5)),
    SettableSetting("MAX_OPEN_POSITIONS", "most positions open at once", Decimal(5)),
    SettableSetting("MAX_POSITION_NOTIONAL_PCT", "largest position notional, % of equity", Decimal(200)),
    SettableSetting("STOP_ATR_MULT", "stop distance in ATRs"),
    SettableSetting("TAKE_PROFIT_ATR_MULT", "take-profit distance in ATRs"),
    SettableSetting("MIN_STOP_PCT", "narrowest stop, % of price"),
    SettableSetting("MAX_STOP_PCT", "widest stop, % of price", Decimal(10)),
    SettableSetting("MIN_REWARD_RISK", "least take-profit/stop ratio"),
    SettableSetting("ENTRY_THRESHOLD", "consensus score needed to enter", applies=NEXT_SCAN),
    SettableSetting("MIN_AGREEING_VOTERS", "voters that must agree to enter", applies=NEXT_SCAN),
    SettableSetting("MIN_AGREEMENT", "least weight share of the majority side", applies=NEXT_SCAN),
    SettableSetting("ML_THRESHOLD", "probability the ML voter needs to vote", applies=NEXT_SCAN),
)
SETTABLE_BY_KEY: dict[str, SettableSetting] = {s.key: s for s in SETTABLE}
#: panel settings /set refuses, and why (the panel is built from them at start-up)
AT_START_ONLY: dict[str, str] = {
    "VOTERS": "picks the panel's voters, which are built at start-up",
    "TIMEFRAMES": "sets the candles every voter and the ML model read, fixed at start-up",
    "ML_MODEL_PATH": "names the model file loaded at start-up (a retrain swaps in a promoted model by itself)",
    "LEARNED_WEIGHTS": "chooses how the panel is built at start-up",
}


@dataclass(frozen=True, slots=True)
class BreakerView:
    name: str
    tripped: bool
    reason: str
    since: datetime | None
    until: datetime | None = None
    threshold: str = ""
    reset_rule: str = ""


@dataclass(frozen=True, slots=True)
class SettingChange:
    key: str
    old: str
    new: str
    risky: bool = False
    applies: str = ENTRIES


@dataclass(frozen=True, slots=True)
class SymbolPerformance:
    symbol: str
    trades: int
    wins: int
    net_pnl: Decimal
    gross_profit: Decimal
    gross_loss: Decimal
    fees: Decimal
    funding: Decimal
    best: Decimal
    worst: Decimal

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    @property
    def profit_factor(self) -> Decimal | None:
        return None if self.gross_loss == 0 else self.gross_profit / -self.gross_loss


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    total: SymbolPerformance
    by_symbol: tuple[SymbolPerformance, ...]
    max_drawdown: Decimal  # deepest fall of cumulative net realised P&L from its peak (≤ 0)


def performance_of(trades: Sequence[TradeRecord]) -> PerformanceReport:
    """Pure computation over closed trades (any order); symbols sorted by net P&L, best first."""
    by_symbol: dict[str, list[TradeRecord]] = {}
    for trade in trades:
        by_symbol.setdefault(trade.symbol, []).append(trade)
    rows = sorted((_stats(sym, ts) for sym, ts in by_symbol.items()), key=lambda s: s.net_pnl, reverse=True)
    peak = cumulative = drawdown = Decimal(0)
    for trade in sorted(trades, key=lambda t: (t.closed_at or t.created_at, t.id)):
        cumulative += trade.net_pnl
        peak = max(peak, cumulative)
        drawdown = min(drawdown, cumulative - peak)
    return PerformanceReport(_stats("ALL", list(trades)), tuple(rows), drawdown)


def _stats(symbol: str, trades: Sequence[TradeRecord]) -> SymbolPerformance:
    nets = [t.net_pnl for t in trades]
    zero = Decimal(0)
    return SymbolPerformance(
        symbol=symbol, trades=len(trades), wins=sum(1 for n in nets if n > 0), net_pnl=sum(nets, zero),
        gross_profit=sum((n for n in nets if n > 0), zero), gross_loss=sum((n for n in nets if n < 0), zero),
        fees=sum((t.fees for t in trades), zero), funding=sum((t.funding for t in trades), zero),
        best=max(nets, default=zero), worst=min(nets, default=zero))
