"""The fast engine's simulated exchange account: wallet, one-way positions, close-position protective orders,
funding and liquidation, walked one 5m candle at a time. In memory, synchronous, Decimal money; every price,
fee, funding amount and liquidation comes from ``engine.exchange.fills`` exactly as in ``PaperExchange``, and
the order of events (symbols in name order; funding, then triggers, candle by candle; then the mark price)
is the PaperExchange's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from core.enums import PositionSide, Side
from engine.exchange import fills
from engine.exchange.errors import InsufficientMargin, OrderRejected, WouldTrigger
from engine.exchange.fills import Candle, Holding
from engine.exchange.liquidation import DEFAULT_BRACKETS, cross_wallet_balance, liquidation_price, max_leverage
from engine.exchange.rules import check_order, check_price
from engine.exchange.types import LeverageBracket, MarginType, ProtectiveKind, SymbolRules

ZERO = Decimal(0)
BASE_MS = 300_000
FUNDING_PERIOD_MS = 8 * 3_600_000
#: relative margin of the float pre-check of a trigger level (float rounding is ~1e-16)
REACH_MARGIN = 1e-9


def dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


@dataclass(slots=True)
class SymbolData:
    """One symbol's 5m candles (float arrays, ascending open times) and funding history."""

    symbol: str
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    funding_time: np.ndarray
    funding_rate: tuple[Decimal, ...]

    def candle(self, i: int) -> Candle:
        return Candle(int(self.open_time[i]), dec(self.open[i]), dec(self.high[i]), dec(self.low[i]),
                      dec(self.close[i]))

    def mark(self, now_ms: int) -> Decimal:
        """The open of the candle containing ``now_ms``, else the last close (HistoricalMarket's mark)."""
        i = int(self.open_time.searchsorted(now_ms, side="right")) - 1
        if i < 0:
            raise ValueError(f"{self.symbol}: no market data at {now_ms}")
        price = self.open[i] if now_ms < int(self.open_time[i]) + BASE_MS else self.close[i]
        return dec(price)

    def funding_at(self, now_ms: int) -> tuple[Decimal, int]:
        """(last settled rate, next funding time) as HistoricalMarket reports them with the mark price."""
        j = int(self.funding_time.searchsorted(now_ms, side="right"))
        rate = self.funding_rate[j - 1] if j > 0 else Decimal(0)
        if j < len(self.funding_time):
            return rate, int(self.funding_time[j])
        last = int(self.funding_time[-1]) if len(self.funding_time) else now_ms - now_ms % FUNDING_PERIOD_MS
        return rate, last + ((now_ms - last) // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS


@dataclass(slots=True)
class Position:
    holding: Holding
    opened_ms: int

    @property
    def side(self) -> PositionSide:
        return self.holding.side

    @property
    def quantity(self) -> Decimal:
        return self.holding.quantity

    @property
    def entry_price(self) -> Decimal:
        return self.holding.entry_price


@dataclass(slots=True)
class Algo:
    """An open close-position STOP_MARKET / TAKE_PROFIT_MARKET order."""

    oid: int
    symbol: str
    side: Side
    kind: ProtectiveKind
    trigger: Decimal
    created_ms: int
    owner: int  # the trade it protects


@dataclass(frozen=True, slots=True)
class FillRecord:
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    realized_pnl: Decimal
    ms: int
    liquidation: bool = False
    algo: Algo | None = None  # the protective order that fired, if any


@dataclass(frozen=True, slots=True)
class FundingRecord:
    symbol: str
    ms: int
    amount: Decimal


@dataclass(slots=True)
class Account:
    rules: dict[str, SymbolRules]
    data: dict[str, SymbolData]
    wallet: Decimal
    taker_fee: Decimal
    slippage_pct: Decimal
    default_leverage: int
    default_margin_type: MarginType
    positions: dict[str, Position] = field(default_factory=dict)
    configs: dict[str, tuple[int, MarginType]] = field(default_factory=dict)
    algos: dict[int, Algo] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    last_mark: dict[str, Decimal] = field(default_factory=dict)
    fills: list[FillRecord] = field(default_factory=list)  # new fills since the caller last drained them
    funding: list[FundingRecord] = field(default_factory=list)
    caught_up_ms: int | None = None
    _marks: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    _epoch: int = 0  # bumped by every change of the wallet, a position or the open orders
    _trigger_cache: dict[str, tuple[tuple[object, ...], list[fills.Trigger], list[tuple[fills.Trigger, float]]]] = (
        field(default_factory=dict))
    next_oid: int = 1

    # --- queries ------------------------------------------------------------------------------
    def brackets(self, symbol: str) -> tuple[LeverageBracket, ...]:
        return self.rules[symbol].brackets or DEFAULT_BRACKETS

    def config(self, symbol: str) -> tuple[int, MarginType]:
        return self.configs.get(symbol, (self.default_leverage, self.default_margin_type))

    def active_symbols(self) -> set[str]:
        return set(self.positions) | {o.symbol for o in self.algos.values()}

    def is_active(self, symbol: str) -> bool:
        """``symbol in active_symbols()`` without building the set."""
        return symbol in self.positions or any(o.symbol == symbol for o in self.algos.values())

    def algos_of(self, symbol: str) -> list[Algo]:
        return [o for o in self.algos.values() if o.symbol == symbol]

    def mark(self, symbol: str, now_ms: int) -> Decimal:
        cached = self._marks.get(symbol)
        if cached is not None and cached[0] == now_ms:
            mark = cached[1]
        else:
            mark = self.data[symbol].mark(now_ms)
            self._marks[symbol] = (now_ms, mark)
        self.last_mark[symbol] = mark
        return mark

    def marks(self, now_ms: int) -> dict[str, Decimal]:
        return {s: self.mark(s, now_ms) for s in self.positions}

    def balance(self, now_ms: int) -> tuple[Decimal, Decimal, Decimal]:
        """(wallet, equity, available) at the marks of ``now_ms`` (after catching up)."""
        equity = self.equity(now_ms)
        return self.wallet, equity, self._available(self.marks(now_ms))

    def equity(self, now_ms: int) -> Decimal:
        """``balance(now_ms)[1]`` alone (the monitor's breakers and equity curve need nothing else)."""
        self.catch_up(now_ms)
        return self.wallet + sum((fills.unrealized_pnl(p.holding, self.mark(s, now_ms))
                                  for s, p in self.positions.items()), ZERO)

    def _available(self, marks: dict[str, Decimal]) -> Decimal:
        margin = sum((fills.position_margin(p.holding, marks[s]) for s, p in self.positions.items()), ZERO)
        cross = sum((fills.unrealized_pnl(p.holding, marks[s]) for s, p in self.positions.items()
                     if p.holding.margin_type is MarginType.CROSSED), ZERO)
        return max(self.wallet - margin + min(cross, ZERO), ZERO)

    def liquidation_level(self, symbol: str) -> Decimal:
        p = self.positions[symbol]
        h = p.holding
        if h.margin_type is MarginType.ISOLATED:
            wallet = h.isolated_margin
        else:
            others = [(s, o) for s, o in self.positions.items()
                      if s != symbol and o.holding.margin_type is MarginType.CROSSED]
            isolated = sum((o.holding.isolated_margin for o in self.positions.values()
                            if o.holding.margin_type is MarginType.ISOLATED), ZERO)
            pairs = []
            for s, o in others:
                mark = self.last_mark.get(s, o.entry_price)
                pairs.append((o.quantity * mark, fills.unrealized_pnl(o.holding, mark)))
            wallet = cross_wallet_balance(self.wallet - isolated, pairs, [self.brackets(s) for s, _ in others])
        return liquidation_price(h.side, h.quantity, h.entry_price, wallet, self.brackets(symbol))

    # --- orders -------------------------------------------------------------------------------
    def set_config(self, symbol: str, leverage: int, margin_type: MarginType) -> None:
        top = max(b.initial_leverage for b in self.brackets(symbol))
        if not 1 <= leverage <= top:
            raise OrderRejected(f"{symbol}: leverage {leverage} is not valid (1..{top})", code=-4028)
        self.configs[symbol] = (leverage, margin_type)

    def market_order(self, symbol: str, side: Side, quantity: Decimal, now_ms: int, *,
                     reduce_only: bool) -> FillRecord:
        """A market order filled at once at the slipped mark (raises ``OrderRejected`` as PaperExchange)."""
        self.catch_up(now_ms)
        rules = self.rules[symbol]
        mark = self.mark(symbol, now_ms)
        check_order(rules, quantity, mark, market=True, reduce_only=reduce_only)
        position = self.positions.get(symbol)
        fill_qty = quantity
        if reduce_only:
            if position is None or position.side.exit_side is not side:
                raise OrderRejected(f"{symbol}: reduce-only {side.value} order rejected: no position it would "
                                    "reduce", code=-2022)
            fill_qty = min(quantity, position.quantity)
        price = fills.slipped(rules, mark, side, self.slippage_pct)
        fee = fills.taker_fee(price, fill_qty, self.taker_fee)
        self._check_margin(symbol, side, fill_qty, price, fee, position, now_ms)
        was_active = self.is_active(symbol)
        fill = self._trade(symbol, side, fill_qty, price, fee, now_ms)
        if symbol not in self.positions:
            self._expire_algos(symbol)
        elif not was_active:
            self.cursors[symbol] = now_ms - now_ms % BASE_MS
        return fill

    def _check_margin(self, symbol: str, side: Side, quantity: Decimal, price: Decimal, fee: Decimal,
                      position: Position | None, now_ms: int) -> None:
        opening, released = quantity, ZERO
        if position is not None and position.side.exit_side is side:
            opening = max(quantity - position.quantity, ZERO)
            released = fills.position_margin(position.holding, self.mark(symbol, now_ms)) if opening > 0 else ZERO
        if opening == 0:
            return
        same = position is not None and position.side.entry_side is side
        leverage = position.holding.leverage if same and position is not None else self.config(symbol)[0]
        marks = self.marks(now_ms)
        available = self._available(marks) + released
        required = opening * price / leverage + fee
        if required > available:
            raise InsufficientMargin(f"{symbol}: margin is insufficient — needs {required:.4f} USDT, "
                                     f"{available:.4f} available", code=-2019)
        total = opening + (position.quantity if same and position is not None else ZERO)
        notional = total * marks.get(symbol, price)
        if max_leverage(notional, self.brackets(symbol)) < leverage:
            raise OrderRejected(f"{symbol}: a {notional:.2f} USDT position exceeds the maximum allowed at "
                                f"{leverage}x leverage", code=-2027)

    def place_protective(self, symbol: str, side: Side, kind: ProtectiveKind, trigger: Decimal, now_ms: int,
                         owner: int) -> Algo:
        self.catch_up(now_ms)
        check_price(self.rules[symbol], trigger)
        mark = self.mark(symbol, now_ms)
        if fills.met(fills.protective_trigger(None, side, kind, trigger), mark):
            raise WouldTrigger(f"{symbol}: {kind.value} {side.value} at {trigger} would trigger immediately "
                               f"(mark price {mark})", code=-2021)
        if not self.is_active(symbol):
            self.cursors[symbol] = now_ms - now_ms % BASE_MS
        algo = Algo(self.next_oid, symbol, side, kind, trigger, now_ms, owner)
        self.next_oid += 1
        self.algos[algo.oid] = algo
        self._epoch += 1
        return algo

    def cancel(self, algo: Algo) -> bool:
        """Cancel an open protective order; False when it is no longer open (fired or expired)."""
        self._epoch += 1
        return self.algos.pop(algo.oid, None) is not None

    def _expire_algos(self, symbol: str) -> None:
        for o in self.algos_of(symbol):
            del self.algos[o.oid]
            self._epoch += 1

    def _trade(self, symbol: str, side: Side, quantity: Decimal, price: Decimal, fee: Decimal, ms: int, *,
               liquidation: bool = False, algo: Algo | None = None) -> FillRecord:
        position = self.positions.get(symbol)
        leverage, margin_type = self.config(symbol)
        realized, after, opened = fills.execute(None if position is None else position.holding, side, quantity,
                                                price, leverage=leverage, margin_type=margin_type)
        self.wallet += realized - fee
        self._epoch += 1
        if after is None:
            self.positions.pop(symbol, None)
        elif opened or position is None:
            self.positions[symbol] = Position(after, ms)
        else:
            position.holding = after
        fill = FillRecord(symbol, side, price, quantity, fee, realized, ms, liquidation, algo)
        self.fills.append(fill)
        return fill

    # --- simulation of time -------------------------------------------------------------------
    def catch_up(self, now_ms: int) -> None:
        """Walk every active symbol's closed candles up to ``now_ms``, then check its mark price."""
        if now_ms == self.caught_up_ms:
            return
        for symbol in sorted(self.active_symbols()):
            self._advance(symbol, now_ms)
            if self.is_active(symbol):
                self._check_mark(symbol, now_ms)
        self.caught_up_ms = now_ms

    def _advance(self, symbol: str, now_ms: int) -> None:
        data = self.data[symbol]
        cursor = self.cursors.get(symbol, now_ms)
        if cursor + BASE_MS > now_ms:
            return
        lo = int(data.open_time.searchsorted(cursor, side="left"))
        hi = int(data.open_time.searchsorted(now_ms - BASE_MS, side="right"))
        if hi <= lo:
            return
        pending: list[tuple[int, Decimal]] = []
        if symbol in self.positions:
            first, last = int(data.open_time[lo]), min(int(data.open_time[hi - 1]) + BASE_MS - 1, now_ms)
            a = int(data.funding_time.searchsorted(first, side="left"))
            if a < len(data.funding_time) and data.funding_time[a] <= last:
                b = int(data.funding_time.searchsorted(last, side="right"))
                pending = [(int(data.funding_time[k]), data.funding_rate[k]) for k in range(a, b)]
        for i in range(lo, hi):
            open_ms = int(data.open_time[i])
            end_ms = open_ms + BASE_MS
            due: list[tuple[int, Decimal]] = []
            if pending:
                due = [f for f in pending if f[0] < end_ms]
                pending = pending[len(due):]
                due = [f for f in due if f[0] >= open_ms]
            if due or self._may_reach(symbol, float(data.low[i]), float(data.high[i])):
                candle = data.candle(i)
                if not due and not any(fills.reach(t, candle) for t in self._triggers(symbol)):
                    self.cursors[symbol] = end_ms
                    continue
                for funding_ms, rate in due:
                    self._settle_funding(symbol, funding_ms, rate, candle.open)
                self._resolve(symbol, candle, None, now_ms)
            self.cursors[symbol] = end_ms
            if not self.is_active(symbol):
                return

    def _check_mark(self, symbol: str, now_ms: int) -> None:
        mark = self.mark(symbol, now_ms)
        if any(fills.met(t, mark) for t in self._triggers(symbol)):
            self._resolve(symbol, None, mark, now_ms)

    def _settle_funding(self, symbol: str, funding_ms: int, rate: Decimal, price: Decimal) -> None:
        position = self.positions.get(symbol)
        if position is None or funding_ms < position.opened_ms:
            return
        amount = fills.funding_amount(position.side, position.quantity, price, rate)
        self.wallet += amount
        self._epoch += 1
        if position.holding.margin_type is MarginType.ISOLATED:
            h = position.holding
            position.holding = Holding(h.side, h.quantity, h.entry_price, h.leverage, h.margin_type,
                                       h.isolated_margin + amount)
        self.funding.append(FundingRecord(symbol, funding_ms, amount))

    def _may_reach(self, symbol: str, low: float, high: float) -> bool:
        """False only when no trigger can be reached by a candle with this low and high: a float pre-check with a
        margin far wider than the float/Decimal rounding, so the exact Decimal test (``fills.reach``) decides every
        case that is anywhere near a level."""
        for trigger, level in self._float_levels(symbol):
            if (low <= level * (1 + REACH_MARGIN)) if trigger.falls else (high >= level * (1 - REACH_MARGIN)):
                return True
        return False

    def _float_levels(self, symbol: str) -> list[tuple[fills.Trigger, float]]:
        return self._trigger_entry(symbol)[1]

    def _triggers(self, symbol: str) -> list[fills.Trigger]:
        return self._trigger_entry(symbol)[0]

    def _trigger_entry(self, symbol: str) -> tuple[list[fills.Trigger], list[tuple[fills.Trigger, float]]]:
        """The symbol's protective orders and its liquidation level as triggers, with each level as a float (for
        ``_may_reach``). They depend only on its open orders, the wallet, every position (all three bump
        ``_epoch``) and, for a CROSSED position, the others' last marks (its liquidation level moves with their
        P&L), so they are kept until one of those changes."""
        own = self.positions.get(symbol)
        cross = own is not None and own.holding.margin_type is MarginType.CROSSED
        others = (self.last_mark.get(s) for s in self.positions if s != symbol) if cross else ()
        key = (self._epoch, *others)
        cached = self._trigger_cache.get(symbol)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        algos = self.algos_of(symbol)
        out = [fills.protective_trigger(o, o.side, o.kind, o.trigger) for o in algos]
        if symbol in self.positions:
            level = self.liquidation_level(symbol)
            if level > 0:
                out.append(fills.liquidation_trigger(self.positions[symbol].side, level))
        levels = [(t, float(t.level)) for t in out]
        self._trigger_cache[symbol] = (key, out, levels)
        return out, levels

    def _existed(self, symbol: str, trigger: fills.Trigger, candle: Candle) -> bool:
        if isinstance(trigger.ref, Algo):
            born = trigger.ref.created_ms
        else:
            position = self.positions.get(symbol)
            if position is None:
                return False
            born = position.opened_ms
        return fills.existed_from_open(born, candle)

    def _resolve(self, symbol: str, candle: Candle | None, mark: Decimal | None, now_ms: int) -> None:
        while True:
            position = self.positions.get(symbol)
            up = fills.up_first(position.side if position is not None else None)
            triggers = [t for t in self._triggers(symbol) if candle is None or self._existed(symbol, t, candle)]
            hit = fills.first_hit(triggers, candle, mark, up)
            if hit is None:
                return
            when = now_ms if candle is None else fills.event_ms(candle, hit, BASE_MS, up)
            order = hit.trigger.ref
            if not isinstance(order, Algo):
                assert position is not None
                h = position.holding
                liq = fills.liquidation_fill(self.rules[symbol], h.side, h.quantity, h.entry_price, hit.trigger.level,
                                             h.margin_type, h.isolated_margin, self.brackets(symbol))
                self._trade(symbol, h.side.exit_side, h.quantity, liq.price, liq.fee, when, liquidation=True)
            elif position is None or position.side.exit_side is not order.side:
                del self.algos[order.oid]
                self._epoch += 1
                continue
            else:
                price = fills.slipped(self.rules[symbol], hit.price, order.side, self.slippage_pct)
                fee = fills.taker_fee(price, position.quantity, self.taker_fee)
                del self.algos[order.oid]
                self._epoch += 1
                self._trade(symbol, order.side, position.quantity, price, fee, when, algo=order)
            self._expire_algos(symbol)
            return
