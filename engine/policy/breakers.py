"""Circuit breaker rules: account-level and per-symbol guards that stop new entries when things go wrong.

| breaker | trips when | resets |
|---|---|---|
| ``daily_loss`` | equity falls ``daily_loss_pct`` % below the UTC day's starting equity | at UTC midnight |
| ``drawdown`` | equity falls ``max_drawdown_pct`` % below the peak ACCOUNT equity | only by the operator |
| ``consecutive_losses`` | ``max_consecutive_losses`` losing trades in a row | after ``consecutive_losses_pause`` |
| ``volatility`` | BTC ATR % ≥ ``volatility_ratio`` × its norm | ratio ≤ ``volatility_reset_ratio`` after a pause |
| ``api_errors`` | ``api_errors_max`` errors within ``api_errors_window`` | ``api_errors_pause`` after the last error |
| ``symbol_cooldown:<S>`` | a trade on S closed by its stop at a loss | after ``symbol_cooldown`` |
| ``symbol_daily_loss:<S>`` | S's net loss today ≥ ``symbol_daily_loss_pct`` % of the day's start | UTC midnight |

Every tripped breaker blocks new entries (per-symbol ones only on their symbol); the drawdown breaker can
also ask for everything to be closed (``drawdown_close_all``; see :meth:`Breakers.close_all_request`).
Open positions stay managed and protected. The operator can reset any breaker. A threshold of 0 disables
its breaker.

Pure rules: ``BreakerRules`` works on the state values alone (no I/O); ``engine.trading.breakers.Breakers``
persists them in the ``state`` table as JSON under ``breaker:<name>``, and the fast backtest keeps them in
memory. Every method takes ``now`` (aware UTC) and returns the ``BreakerTripped`` / ``BreakerReset`` events for
the caller to publish.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from core.enums import ExitReason
from engine.events import BreakerReset, BreakerTripped, Event

log = logging.getLogger(__name__)

ZERO = Decimal(0)
HUNDRED = Decimal(100)

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
CONSECUTIVE_LOSSES = "consecutive_losses"
VOLATILITY = "volatility"
API_ERRORS = "api_errors"
SYMBOL_COOLDOWN = "symbol_cooldown"
SYMBOL_DAILY_LOSS = "symbol_daily_loss"
GLOBAL_BREAKERS = (DAILY_LOSS, DRAWDOWN, CONSECUTIVE_LOSSES, VOLATILITY, API_ERRORS)
SYMBOL_BREAKERS = (SYMBOL_COOLDOWN, SYMBOL_DAILY_LOSS)
ALL_BREAKERS = GLOBAL_BREAKERS + SYMBOL_BREAKERS


class TradeResult(Protocol):
    """A closed trade (``engine.events.TradeClosed`` fits)."""

    @property
    def symbol(self) -> str:
        ...

    @property
    def reason(self) -> str:
        ...

    @property
    def net_pnl(self) -> Decimal:
        ...


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    net_pnl: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What the monitor tick knows: account equity (wallet + unrealised) and BTC's ATR % over its norm."""

    equity: Decimal
    btc_atr_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    daily_loss_pct: Decimal = Decimal("3")
    max_drawdown_pct: Decimal = Decimal("15")
    drawdown_close_all: bool = False
    max_consecutive_losses: int = 4
    consecutive_losses_pause: timedelta = timedelta(hours=12)
    volatility_ratio: float = 2.5
    volatility_reset_ratio: float = 1.5
    volatility_min_pause: timedelta = timedelta(hours=1)
    api_errors_max: int = 10
    api_errors_window: timedelta = timedelta(minutes=5)
    api_errors_pause: timedelta = timedelta(minutes=15)
    symbol_cooldown: timedelta = timedelta(hours=2)
    symbol_daily_loss_pct: Decimal = Decimal("2")
    cooldown_reasons: frozenset[str] = frozenset({ExitReason.STOP_LOSS, ExitReason.LIQUIDATION})


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """One line of /breakers."""

    name: str
    tripped: bool
    reason: str
    since: datetime | None
    until: datetime | None
    threshold: str
    reset_rule: str
    detail: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- helpers
def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if not value else _parse_time(value)


@lru_cache(maxsize=256)
def _parse_time(value: str) -> datetime:
    """States keep times as ISO strings; the monitor reads the same few (pause ends, cooldowns) on every tick."""
    return datetime.fromisoformat(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else _parse_decimal(value)


@lru_cache(maxsize=256)
def _parse_decimal(value: str) -> Decimal:
    """States keep money as strings; the monitor reads the same few (peak, day start) on every tick."""
    return Decimal(value)


@lru_cache(maxsize=64)
def _date_text(day: date) -> str:
    return day.isoformat()


def _day(now: datetime) -> str:
    return _date_text(now.date())


def _next_midnight(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _tripped(state: dict[str, Any], reason: str, now: datetime, until: datetime | None = None) -> None:
    state.update(tripped=True, reason=reason, since=now.isoformat(), until=_iso(until))


def _cleared(state: dict[str, Any]) -> None:
    state.update(tripped=False, reason="", since=None, until=None)


#: bookkeeping cleared when a paused breaker resets
_FRESH: dict[str, dict[str, Any]] = {CONSECUTIVE_LOSSES: {"count": 0}, API_ERRORS: {"errors": []}}


class BreakerResetRefused(Exception):
    """The breaker only resets by the operator."""


# ------------------------------------------------------------------------------------------- breakers
class BreakerRules:
    """The breaker rules over plain state values: ``states`` maps each breaker name to its JSON-able state (what
    the ``state`` table stores under ``breaker:<name>``). Every method takes ``now`` and returns the events for
    the caller to publish; :meth:`take_changes` hands over the states changed since its last call, for the
    caller to persist. No I/O."""

    def __init__(self, config: BreakerConfig | None = None,
                 states: dict[str, dict[str, Any]] | None = None) -> None:
        self.config = config or BreakerConfig()
        self._cache: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (states or {}).items()}
        self._changed: set[str] = set()
        self._last_equity: Decimal | None = None
        self._descriptions = _descriptions(self.config)

    def take_changes(self) -> dict[str, dict[str, Any]]:
        """The states changed since the last call (name → state)."""
        changed = {name: self._cache[name] for name in sorted(self._changed)}
        self._changed.clear()
        return changed

    def _load(self, name: str) -> dict[str, Any]:
        return self._cache.setdefault(name, {})

    def _save(self, name: str, state: dict[str, Any], now: datetime) -> None:
        self._cache[name] = state
        self._changed.add(name)

    # --- monitor tick -----------------------------------------------------------------------
    def evaluate(self, snapshot: AccountSnapshot, now: datetime) -> list[Event]:
        """Update the equity- and market-driven breakers and apply every time-based reset."""
        self._last_equity = snapshot.equity
        events: list[Event] = []
        events += self._daily_loss(snapshot.equity, now)
        events += self._drawdown(snapshot.equity, now)
        events += self._volatility(snapshot.btc_atr_ratio, now)
        events += self._expire(now)
        events += self._symbol_daily_roll(now)
        for event in events:
            log.info("%s %s: %s", event.kind, getattr(event, "breaker", ""), getattr(event, "reason", ""))
        return events

    def _daily_loss(self, equity: Decimal, now: datetime) -> list[Event]:
        state = self._load(DAILY_LOSS)
        events: list[Event] = []
        today = _day(now)
        if state.get("day") != today:
            if state.get("tripped"):
                events.append(BreakerReset(now, DAILY_LOSS, f"new UTC day {today}"))
            state = {"day": today, "start_equity": str(equity)}
            _cleared(state)
            self._save(DAILY_LOSS, state, now)
        elif state.get("start_equity") is None:
            state = {**state, "start_equity": str(equity)}
            self._save(DAILY_LOSS, state, now)
        limit = self.config.daily_loss_pct
        start = _parse_decimal(state["start_equity"])
        if state.get("tripped") or limit <= 0 or start <= 0 or equity >= start:   # no loss today: nothing to trip
            return events
        loss_pct = (start - equity) / start * HUNDRED
        if loss_pct >= limit:
            state = dict(state)
            _tripped(state, f"equity {equity:.2f} is {loss_pct:.2f}% below the UTC day's start {start:.2f} "
                     f"(limit {limit}%)", now, _next_midnight(today))
            self._save(DAILY_LOSS, state, now)
            events.append(BreakerTripped(now, DAILY_LOSS, state["reason"]))
        return events

    def _drawdown(self, equity: Decimal, now: datetime) -> list[Event]:
        state = self._load(DRAWDOWN)
        peak = _dec(state.get("peak"))
        if peak is None or equity > peak:
            state = {**state, "peak": str(equity)}
            peak = equity
            self._save(DRAWDOWN, state, now)
        limit = self.config.max_drawdown_pct
        if state.get("tripped") or limit <= 0 or peak <= 0 or equity >= peak:   # at the peak: no drawdown
            return []
        dd = (peak - equity) / peak * HUNDRED
        if dd < limit:
            return []
        state = dict(state)
        _tripped(state, f"equity {equity:.2f} is {dd:.2f}% below the peak {peak:.2f} (limit {limit}%)", now)
        state["close_all_pending"] = self.config.drawdown_close_all
        self._save(DRAWDOWN, state, now)
        return [BreakerTripped(now, DRAWDOWN, state["reason"] + ("; closing all positions"
                                                                 if self.config.drawdown_close_all else ""))]

    def _volatility(self, ratio: float | None, now: datetime) -> list[Event]:
        cfg = self.config
        if ratio is None or cfg.volatility_ratio <= 0:
            return []
        state = self._load(VOLATILITY)
        if not state.get("tripped") and ratio >= cfg.volatility_ratio:
            state = {"ratio": ratio}
            _tripped(state, f"BTC ATR is {ratio:.2f}x its norm (limit {cfg.volatility_ratio}x)", now)
            self._save(VOLATILITY, state, now)
            return [BreakerTripped(now, VOLATILITY, state["reason"])]
        since = _dt(state.get("since"))
        if (state.get("tripped") and ratio <= cfg.volatility_reset_ratio and since is not None
                and now - since >= cfg.volatility_min_pause):
            state = {"ratio": ratio}
            _cleared(state)
            self._save(VOLATILITY, state, now)
            return [BreakerReset(now, VOLATILITY, f"BTC ATR back to {ratio:.2f}x its norm")]
        return []

    def _expire(self, now: datetime) -> list[Event]:
        """Time-based resets: consecutive-loss pause, API-error pause, per-symbol cooldowns."""
        events: list[Event] = []
        for name in (CONSECUTIVE_LOSSES, API_ERRORS):
            state = self._load(name)
            if not state.get("tripped"):
                continue
            until = _dt(state.get("until"))
            if until is not None and now >= until:
                state = {**state, **_FRESH[name]}
                _cleared(state)
                self._save(name, state, now)
                events.append(BreakerReset(now, name, "pause over"))
        cooldown = self._load(SYMBOL_COOLDOWN)
        expired = [s for s, v in cooldown.get("symbols", {}).items() if now >= _parse_time(v["until"])]
        if expired:
            symbols = dict(cooldown["symbols"])
            for symbol in expired:
                symbols.pop(symbol)
                events.append(BreakerReset(now, f"{SYMBOL_COOLDOWN}:{symbol}", "cooldown over"))
            self._save(SYMBOL_COOLDOWN, {"symbols": symbols}, now)
        return events

    def _symbol_daily_roll(self, now: datetime) -> list[Event]:
        state = self._load(SYMBOL_DAILY_LOSS)
        today = _day(now)
        if not state or state.get("day") == today:
            return []
        events: list[Event] = [BreakerReset(now, f"{SYMBOL_DAILY_LOSS}:{s}", f"new UTC day {today}")
                               for s in sorted(state.get("tripped", {}))]
        self._save(SYMBOL_DAILY_LOSS, {"day": today, "net": {}, "tripped": {}}, now)
        return events

    # --- trade and error feeds --------------------------------------------------------------
    def record_trade_closed(self, result: TradeResult, now: datetime) -> list[Event]:
        """Feed a closed trade: consecutive losses, the symbol's cooldown and its daily loss."""
        events: list[Event] = []
        events += self._consecutive(result, now)
        events += self._cooldown(result, now)
        events += self._symbol_loss(result, now)
        return events

    def _consecutive(self, result: TradeResult, now: datetime) -> list[Event]:
        cfg = self.config
        state = dict(self._load(CONSECUTIVE_LOSSES))
        count = int(state.get("count", 0))
        count = count + 1 if result.net_pnl < 0 else (count if state.get("tripped") else 0)
        state["count"] = count
        events: list[Event] = []
        if not state.get("tripped") and cfg.max_consecutive_losses > 0 and count >= cfg.max_consecutive_losses:
            _tripped(state, f"{count} losing trades in a row (limit {cfg.max_consecutive_losses}); last "
                     f"{result.symbol} {result.net_pnl:.2f} USDT", now, now + cfg.consecutive_losses_pause)
            events.append(BreakerTripped(now, CONSECUTIVE_LOSSES, state["reason"]))
        self._save(CONSECUTIVE_LOSSES, state, now)
        return events

    def _cooldown(self, result: TradeResult, now: datetime) -> list[Event]:
        cfg = self.config
        if cfg.symbol_cooldown <= timedelta(0) or result.reason not in cfg.cooldown_reasons or result.net_pnl >= 0:
            return []
        state = self._load(SYMBOL_COOLDOWN)
        symbols = dict(state.get("symbols", {}))
        until = now + cfg.symbol_cooldown
        reason = (f"{result.symbol} closed by {result.reason} at {result.net_pnl:.2f} USDT; no new entry until "
                  f"{until:%Y-%m-%d %H:%M} UTC")
        symbols[result.symbol] = {"since": now.isoformat(), "until": until.isoformat(), "reason": reason}
        self._save(SYMBOL_COOLDOWN, {"symbols": symbols}, now)
        return [BreakerTripped(now, f"{SYMBOL_COOLDOWN}:{result.symbol}", reason)]

    def _symbol_loss(self, result: TradeResult, now: datetime) -> list[Event]:
        events = self._symbol_daily_roll(now)
        state = self._load(SYMBOL_DAILY_LOSS)
        today = _day(now)
        net = dict(state.get("net", {}))
        tripped = dict(state.get("tripped", {}))
        total = Decimal(net.get(result.symbol, "0")) + result.net_pnl
        net[result.symbol] = str(total)
        start = _dec((self._load(DAILY_LOSS)).get("start_equity"))
        limit = self.config.symbol_daily_loss_pct
        if result.symbol not in tripped and limit > 0 and start and start > 0 and -total >= start * limit / HUNDRED:
            reason = (f"{result.symbol} lost {-total:.2f} USDT today, {(-total / start * HUNDRED):.2f}% of the day's "
                      f"start equity {start:.2f} (limit {limit}%)")
            tripped[result.symbol] = {"since": now.isoformat(), "reason": reason}
            events.append(BreakerTripped(now, f"{SYMBOL_DAILY_LOSS}:{result.symbol}", reason))
        self._save(SYMBOL_DAILY_LOSS, {"day": today, "net": net, "tripped": tripped}, now)
        return events

    def record_api_error(self, now: datetime) -> list[Event]:
        """Count one failed exchange call; trips when too many fall within the window."""
        cfg = self.config
        if cfg.api_errors_max <= 0:
            return []
        state = dict(self._load(API_ERRORS))
        cutoff = now - cfg.api_errors_window
        errors = [e for e in state.get("errors", []) if datetime.fromisoformat(e) > cutoff]
        errors.append(now.isoformat())
        state["errors"] = errors[-cfg.api_errors_max:]
        events: list[Event] = []
        if state.get("tripped"):
            state["until"] = (now + cfg.api_errors_pause).isoformat()  # still failing: the pause runs on
        elif len(errors) >= cfg.api_errors_max:
            _tripped(state, f"{len(errors)} exchange errors within {cfg.api_errors_window.total_seconds() / 60:.0f} "
                     f"min (limit {cfg.api_errors_max})", now, now + cfg.api_errors_pause)
            events.append(BreakerTripped(now, API_ERRORS, state["reason"]))
        self._save(API_ERRORS, state, now)
        return events

    def record_monitor_failure(self, streak: int, limit: int, now: datetime) -> list[Event]:
        """A monitor tick failed (``streak`` in a row). It counts as an API error, and ``limit`` failed ticks in a
        row trip the API-error breaker at once: a failing 60-s monitor never reaches the errors-per-window count."""
        events = self.record_api_error(now)
        if self.config.api_errors_max <= 0 or streak < limit:
            return events
        state = dict(self._load(API_ERRORS))
        if state.get("tripped"):
            return events
        _tripped(state, f"the position monitor failed {streak} ticks in a row", now, now + self.config.api_errors_pause)
        self._save(API_ERRORS, state, now)
        return [*events, BreakerTripped(now, API_ERRORS, state["reason"])]

    # --- queries ----------------------------------------------------------------------------
    def entries_blocked(self, symbol: str | None, now: datetime) -> str | None:
        """Why a new entry (on ``symbol``, or any symbol when ``None``) is refused now, or ``None``.

        Time-based resets are applied here too, so a breaker whose pause is over never blocks even if
        ``evaluate`` has not run since."""
        if not self._any_tripped():
            return None
        for status in self._iter_states(now):
            if not status.tripped:
                continue
            name, _, sym = status.name.partition(":")
            if name in SYMBOL_BREAKERS and sym != symbol:
                continue
            return f"{status.name}: {status.reason}"
        return None

    def states_of(self, name: str) -> dict[str, Any]:
        """A copy of one breaker's state values."""
        return dict(self._load(name))

    def _any_tripped(self) -> bool:
        """Cheap pre-check for the hot path: could any breaker block anything at all?"""
        return (any(self._load(name).get("tripped") for name in GLOBAL_BREAKERS)
                or bool(self._load(SYMBOL_COOLDOWN).get("symbols"))
                or bool(self._load(SYMBOL_DAILY_LOSS).get("tripped")))

    def close_all_request(self) -> str | None:
        """The reason, when the drawdown breaker asks for every position to be closed (until done)."""
        state = self._load(DRAWDOWN)
        if state.get("tripped") and state.get("close_all_pending"):
            return f"{DRAWDOWN}: {state.get('reason', '')}"
        return None

    def close_all_done(self, now: datetime) -> None:
        state = self._load(DRAWDOWN)
        if state.get("close_all_pending"):
            self._save(DRAWDOWN, {**state, "close_all_pending": False}, now)

    def states(self, now: datetime) -> list[BreakerStatus]:
        """Every breaker with its threshold and reset rule (per-symbol ones: one line per tripped symbol)."""
        return list(self._iter_states(now))

    def _iter_states(self, now: datetime) -> Iterator[BreakerStatus]:
        for name in GLOBAL_BREAKERS:
            yield self._global_status(name, now)
        yield from self._symbol_statuses(now)

    def _global_status(self, name: str, now: datetime) -> BreakerStatus:
        state = self._load(name)
        until = _dt(state.get("until"))
        tripped = bool(state.get("tripped"))
        if tripped and until is not None and now >= until:
            tripped = False  # its pause is over; evaluate() will record the reset
        threshold, rule = self._describe(name)
        detail = {k: str(v) for k, v in state.items()
                  if k in ("day", "start_equity", "peak", "count", "ratio", "close_all_pending")}
        if name == API_ERRORS:
            detail["recent_errors"] = str(len(state.get("errors", [])))
        return BreakerStatus(name, tripped, state.get("reason", "") if tripped else "",
                             _dt(state.get("since")) if tripped else None, until if tripped else None,
                             threshold, rule, detail)

    def _symbol_statuses(self, now: datetime) -> list[BreakerStatus]:
        out: list[BreakerStatus] = []
        threshold, rule = self._describe(SYMBOL_COOLDOWN)
        for symbol, v in sorted((self._load(SYMBOL_COOLDOWN)).get("symbols", {}).items()):
            until = _parse_time(v["until"])
            if now < until:
                out.append(BreakerStatus(f"{SYMBOL_COOLDOWN}:{symbol}", True, v["reason"], _dt(v["since"]), until,
                                         threshold, rule))
        state = self._load(SYMBOL_DAILY_LOSS)
        threshold, rule = self._describe(SYMBOL_DAILY_LOSS)
        if state.get("day") == _day(now):
            for symbol, v in sorted(state.get("tripped", {}).items()):
                out.append(BreakerStatus(f"{SYMBOL_DAILY_LOSS}:{symbol}", True, v["reason"], _dt(v["since"]),
                                         _next_midnight(state["day"]), threshold, rule,
                                         {"net": state.get("net", {}).get(symbol, "0")}))
        return out

    def _describe(self, name: str) -> tuple[str, str]:
        return self._descriptions[name]

    # --- operator ---------------------------------------------------------------------------
    def reset(self, name: str, *, by_operator: bool, now: datetime) -> list[Event]:
        """Reset ``name`` (``symbol_cooldown`` / ``symbol_daily_loss`` with or without ``:SYMBOL``; ``all``).
        The drawdown breaker refuses unless ``by_operator``. Resetting re-bases the equity reference (daily
        start, drawdown peak) on the last equity seen, so the breaker does not trip again at once."""
        if name == "all":
            names = [n for n in ALL_BREAKERS if by_operator or n != DRAWDOWN]
            return [e for n in names for e in self.reset(n, by_operator=by_operator, now=now)]
        base, _, symbol = name.partition(":")
        if base not in ALL_BREAKERS:
            raise KeyError(f"unknown breaker {name!r}; known: {', '.join(ALL_BREAKERS)}")
        if base == DRAWDOWN and not by_operator:
            raise BreakerResetRefused("the drawdown breaker resets only by the operator")
        why = "reset by the operator" if by_operator else "reset"
        if base in SYMBOL_BREAKERS:
            return self._reset_symbol(base, symbol or None, why, now)
        state = dict(self._load(base))
        if not state.get("tripped"):
            return []
        _cleared(state)
        if base == DAILY_LOSS:
            state["start_equity"] = None if self._last_equity is None else str(self._last_equity)
        elif base == DRAWDOWN:
            state["peak"] = None if self._last_equity is None else str(self._last_equity)
            state["close_all_pending"] = False
        elif base in _FRESH:
            state.update(_FRESH[base])
        self._save(base, state, now)
        return [BreakerReset(now, base, why)]

    def _reset_symbol(self, base: str, symbol: str | None, why: str, now: datetime) -> list[Event]:
        state = dict(self._load(base))
        key = "symbols" if base == SYMBOL_COOLDOWN else "tripped"
        entries = dict(state.get(key, {}))
        targets = sorted(entries) if symbol is None else [symbol] if symbol in entries else []
        if not targets:
            return []
        net = dict(state.get("net", {}))
        for s in targets:
            entries.pop(s)
            net.pop(s, None)  # the symbol's loss so far today is forgiven with it
        state[key] = entries
        if base == SYMBOL_DAILY_LOSS:
            state["net"] = net
        self._save(base, state, now)
        return [BreakerReset(now, f"{base}:{s}", why) for s in targets]


def _descriptions(c: BreakerConfig) -> dict[str, tuple[str, str]]:
    """(threshold, reset rule) of each breaker, for /breakers."""
    return {
        DAILY_LOSS: (f"{c.daily_loss_pct}% of the UTC day's start equity", "at UTC midnight"),
        DRAWDOWN: (f"{c.max_drawdown_pct}% below peak equity" + (" (closes all)" if c.drawdown_close_all else ""),
                   "by the operator only"),
        CONSECUTIVE_LOSSES: (f"{c.max_consecutive_losses} losses in a row", f"after {c.consecutive_losses_pause}"),
        VOLATILITY: (f"BTC ATR >= {c.volatility_ratio}x its norm",
                     f"ratio <= {c.volatility_reset_ratio}x, after {c.volatility_min_pause}"),
        API_ERRORS: (f"{c.api_errors_max} errors in {c.api_errors_window}",
                     f"{c.api_errors_pause} after the last error"),
        SYMBOL_COOLDOWN: (f"stop-loss at a loss ({', '.join(sorted(c.cooldown_reasons))})",
                          f"after {c.symbol_cooldown}"),
        SYMBOL_DAILY_LOSS: (f"{c.symbol_daily_loss_pct}% of the day's start equity on one symbol", "at UTC midnight"),
    }
