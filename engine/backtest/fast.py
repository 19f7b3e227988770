"""The fast backtest engine: the live trader's decisions over an in-memory account, one 5m step at a time.

No SQLite, no asyncio, no per-candle pandas. At every step (candle close + ``scan_delay``, as the replay's
clock) it does what ``engine.trading.trader.Trader`` does, in the same order, with the same pure code:

- **monitor**: catch the account up (``engine.backtest.account``: funding, stops, take-profits and
  liquidations from ``engine.exchange.fills``), feed the equity to the breakers
  (``engine.policy.breakers.BreakerRules``), close everything when the drawdown breaker asks, book the trades
  whose position is gone (stop / trailing stop / take-profit / liquidation), re-place a missing stop, then the
  exit rules of ``engine.policy.exits`` (trailing, break-even, partials, time / stale / signal exits);
- **scan** (every ``scan_every`` steps): signals from the tables (``engine.backtest.signals``), global and
  per-symbol breakers, ``entry_limits_block``, adaptive levels (``engine.policy.adaptive``) and ``plan_entry``
  (``engine.policy.risk``), the market entry, then its stop and take-profit.

Closed trades feed the adaptive memory and the breakers as the trader's ``_on_trade_closed`` does. A
drawdown breaker (reset only by an operator) blocks entries for the rest of the run; ``operator_reset_after``
simulates an operator who resets it that long after it tripped. Trades still open at the end are closed at
the last mark and booked as ``end_of_data``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from core.enums import ExitReason, PositionSide
from engine.backtest.account import Account, Algo, FillRecord, SymbolData
from engine.backtest.results import BacktestResult, DataGap, HaltNotice, TradeResult
from engine.backtest.signals import EMPTY_SCAN, ScanView, StepIndex, SymbolSignals, scan_indices
from engine.exchange.errors import ExchangeError, OrderRejected, WouldTrigger
from engine.exchange.types import MarginType, ProtectiveKind, SymbolRules
from engine.policy.adaptive import AdaptiveConfig, AdaptiveLevels, TradeOutcome
from engine.policy.booking import book, closed_outcome, protective_exit_reason
from engine.policy.breakers import DRAWDOWN, AccountSnapshot, BreakerConfig, BreakerRules, ClosedTrade
from engine.policy.entry import MarketContext, decide_entry
from engine.policy.exits import CloseAll, ClosePartial, ExitConfig, MarketState, MoveStop, PositionState, evaluate_exits
from engine.policy.exits import observe as observe_market
from engine.policy.risk import LimitsConfig, OpenPosition, RiskConfig
from strategies.types import Direction, Signal

log = logging.getLogger(__name__)

ZERO = Decimal(0)
STEP_MS = 300_000
MAX_OUTCOMES = 500


@dataclass(frozen=True, slots=True)
class FastConfig:
    risk: RiskConfig
    limits: LimitsConfig
    exits: ExitConfig | None
    adaptive: AdaptiveConfig
    breakers: BreakerConfig
    margin_type: MarginType
    start_balance: Decimal
    taker_fee: Decimal
    slippage_pct: Decimal
    default_leverage: int
    scan_every: int = 1
    scan_delay: timedelta = timedelta(seconds=5)
    operator_reset_after: timedelta | None = None
    strategy: str = "default"


@dataclass(slots=True)
class _Trade:
    id: int
    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    stop_price: Decimal
    initial_stop: Decimal
    take_profit: Decimal | None
    created_ms: int
    state: PositionState
    atr: Decimal
    regime: str
    fills: list[FillRecord] = field(default_factory=list)
    funding: list[Decimal] = field(default_factory=list)
    stop: Algo | None = None
    take: Algo | None = None
    fired: Algo | None = None
    partials: int = 0
    closed: bool = False

    @property
    def initial_quantity(self) -> Decimal:
        return self.state.initial_quantity


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class FastEngine:
    def __init__(self, config: FastConfig, rules: Mapping[str, SymbolRules], data: Mapping[str, SymbolData],
                 signals: Mapping[str, SymbolSignals], universe: list[str]) -> None:
        self.config = config
        self.universe = universe
        self.rules = dict(rules)
        self.data = dict(data)
        self.signals = signals
        self.account = Account(self.rules, self.data, config.start_balance, config.taker_fee, config.slippage_pct,
                               config.default_leverage, config.margin_type)
        self.breakers = BreakerRules(config.breakers)
        self.open_times = {s: d.open_time for s, d in self.data.items()}
        self.trades: dict[int, _Trade] = {}
        self.closed: list[TradeResult] = []
        self.outcomes: list[TradeOutcome] = []
        self.halts: list[HaltNotice] = []
        self.equity_ms: list[int] = []
        self.equity: list[float] = []
        self.last_scan: ScanView = EMPTY_SCAN
        self._next_id = 1
        self._leverage_set: dict[str, int] = {}
        self._margin_set: set[str] = set()
        self._now = 0
        self._now_dt = datetime.fromtimestamp(0, tz=UTC)
        self._scan_index: dict[str, np.ndarray] = {}
        self._candidates = np.zeros(0, dtype=bool)
        self._btc_ratios: np.ndarray | None = None  # BTC's ATR ratio at each step's scan (NaN: none)
        self._last_scan_step: int | None = None
        self._atr_memo: tuple[float, Decimal] = (float("nan"), Decimal("NaN"))
        self._step = 0
        self._levels: dict[tuple[str, str, int], AdaptiveLevels] = {}  # adaptive levels until the next close

    # ------------------------------------------------------------------ run
    def run(self, start: datetime, end: datetime) -> tuple[Decimal, Decimal]:
        """Step from ``start`` while ``step + scan_delay <= end``; returns (start equity, end equity)."""
        delay = int(self.config.scan_delay.total_seconds() * 1000)
        t, stop = _ms(start), _ms(end)
        start_equity = self.account.balance(t)[1]
        steps = max((stop - delay - t) // STEP_MS + 1, 0)
        self._scan_index = scan_indices(self.open_times, self.universe,
                                        t + delay + np.arange(steps, dtype=np.int64) * STEP_MS, self.signals)
        self._candidates = np.zeros(steps, dtype=bool)  # a scan with no directional symbol opens nothing
        btc_rows, btc_table = self._scan_index.get("BTCUSDT"), self.signals.get("BTCUSDT")
        ratios = getattr(btc_table, "atr_ratio", None)
        self._btc_ratios = (np.where(btc_rows >= 0, np.asarray(ratios)[np.maximum(btc_rows, 0)], np.nan)
                            if btc_rows is not None and ratios is not None else None)
        for symbol, rows in self._scan_index.items():
            table = self.signals.get(symbol)
            if table is None:
                continue
            self._candidates |= (rows >= 0) & (np.asarray(table.direction)[np.maximum(rows, 0)] != 0)
        for step in range(steps):
            if self._halted_for_good():
                self._flat_until(t + step * STEP_MS + delay, steps - step)
                break
            self._step = step
            self._now = t + step * STEP_MS + delay
            self._now_dt = _dt(self._now)
            self.monitor()
            if step % self.config.scan_every == 0:
                self.scan()
        return start_equity, self.account.balance(self._now)[1] if self._now else start_equity

    def _halted_for_good(self) -> bool:
        """No position, no order, and a drawdown halt nobody will reset: nothing can happen any more."""
        return (self.config.operator_reset_after is None and not self.trades and not self.account.active_symbols()
                and bool(self.breakers.states_of(DRAWDOWN).get("tripped")))

    def _flat_until(self, first_ms: int, steps: int) -> None:
        """The rest of the run, with the account flat and entries halted: a constant equity curve."""
        equity = float(self.account.wallet)
        self.equity_ms.extend(first_ms + k * STEP_MS for k in range(steps))
        self.equity.extend([equity] * steps)
        self._now = first_ms + (steps - 1) * STEP_MS
        self._now_dt = _dt(self._now)

    def close_open_trades(self) -> int:
        """Close what is still open at the last mark (booked as ``end_of_data``)."""
        open_trades = [t for t in self.trades.values() if not t.closed]
        for trade in open_trades:
            self._exit(trade, ExitReason.END_OF_DATA)
        return len(open_trades)

    # ------------------------------------------------------------------ monitor
    def monitor(self) -> None:
        now = self._now
        self._operator_reset(now)
        equity = self.account.equity(now)
        btc_ratio = self._btc_ratio()
        for event in self.breakers.evaluate(AccountSnapshot(equity, btc_ratio), self._now_dt):
            if getattr(event, "breaker", "") == DRAWDOWN and event.kind == "BreakerTripped":
                self.halts.append(HaltNotice(self._now_dt, f"{DRAWDOWN}: {event.reason}"))  # type: ignore[attr-defined]
        if self.breakers.close_all_request() is not None:
            for trade in self._active():
                self._exit(trade, ExitReason.BREAKER_CLOSE_ALL)
            if not self._active():
                self.breakers.close_all_done(self._now_dt)
        self._reconcile()
        if self.config.exits is not None:
            for trade in self._active():
                position = self.account.positions.get(trade.symbol)
                if position is not None:
                    self._manage(trade, self.account.mark(trade.symbol, now))
        self.equity_ms.append(now)
        self.equity.append(float(equity))

    def _btc_ratio(self) -> float | None:
        """``last_scan.atr_ratio("BTCUSDT")`` (what the volatility breaker reads), from the per-step array ``run``
        prepares when the BTC table has an ``atr_ratio`` array."""
        if self._btc_ratios is None or self._last_scan_step is None:
            return self.last_scan.atr_ratio("BTCUSDT")
        value = self._btc_ratios[self._last_scan_step]
        return None if value != value else float(value)  # NaN: no ratio

    def _operator_reset(self, now: int) -> None:
        after = self.config.operator_reset_after
        if after is None or not self.halts or self.halts[-1].resumed_at is not None:
            return
        halt = self.halts[-1]
        if self._now_dt - halt.time >= after:
            self.breakers.reset(DRAWDOWN, by_operator=True, now=self._now_dt)
            self.halts[-1] = replace(halt, resumed_at=self._now_dt)

    def _active(self) -> list[_Trade]:
        return [t for t in self.trades.values() if not t.closed]

    def _reconcile(self) -> None:
        now = self._now
        self.account.catch_up(now)
        self._collect_fills()
        for trade in self._active():
            position = self.account.positions.get(trade.symbol)
            if position is None:
                self._book(trade, self._exit_reason(trade))
                continue
            if trade.quantity != position.quantity:
                trade.quantity = position.quantity
            if trade.stop is None or trade.stop.oid not in self.account.algos:
                self._replace_stop(trade)
            elif trade.take_profit is not None and (trade.take is None or trade.take.oid not in self.account.algos):
                try:
                    trade.take = self._place(trade, ProtectiveKind.TAKE_PROFIT, trade.take_profit)
                except ExchangeError:
                    trade.take = None

    def _replace_stop(self, trade: _Trade) -> None:
        try:
            trade.stop = self._place(trade, ProtectiveKind.STOP_LOSS, trade.stop_price)
        except WouldTrigger:
            self._exit(trade, ExitReason.STOP_LOSS)
        except ExchangeError:
            self._exit(trade, "stop_unplaceable")

    def _exit_reason(self, trade: _Trade) -> str:
        if trade.fired is not None:
            return protective_exit_reason(trade.fired.kind is ProtectiveKind.TAKE_PROFIT, trade.fired.trigger,
                                          trade.initial_stop)
        exits = [f for f in trade.fills if f.side is trade.side.exit_side]
        if exits and exits[-1].liquidation:
            return ExitReason.LIQUIDATION
        return ExitReason.MANUAL

    def _collect_fills(self) -> None:
        """Hand the account's new fills and funding payments to the trades holding those symbols."""
        if not self.account.fills and not self.account.funding:
            return
        by_symbol = {t.symbol: t for t in self._active()}
        for fill in self.account.fills:
            trade = by_symbol.get(fill.symbol)
            if trade is not None:
                trade.fills.append(fill)
                if fill.algo is not None:
                    trade.fired = fill.algo
        for payment in self.account.funding:
            trade = by_symbol.get(payment.symbol)
            if trade is not None and payment.ms >= trade.created_ms:
                trade.funding.append(payment.amount)
        self.account.fills.clear()
        self.account.funding.clear()

    # ------------------------------------------------------------------ exits
    def _manage(self, trade: _Trade, mark: Decimal) -> None:
        against = Direction.SHORT if trade.state.side is PositionSide.LONG else Direction.LONG
        consensus, score, atr = self.last_scan.exit_inputs(trade.symbol, against)
        state = trade.state
        quantity, partials = self.account.positions[trade.symbol].quantity, max(state.partials_done, trade.partials)
        if state.quantity != quantity or state.stop_price != trade.stop_price or state.partials_done != partials:
            state = replace(state, quantity=quantity, stop_price=trade.stop_price, partials_done=partials)
        market = MarketState(mark_price=mark, atr=self._decimal_atr(atr) if atr is not None else None,
                             consensus=consensus, consensus_score=score)
        assert self.config.exits is not None
        actions = evaluate_exits(state, market, self.config.exits, self._now_dt, rules=self.rules[trade.symbol])
        before, state = state, observe_market(state, market)
        for action in actions:
            if isinstance(action, CloseAll):
                self._exit(trade, action.reason)
                return
            if isinstance(action, ClosePartial):
                filled = self._close_partial(trade, action.quantity)
                if filled is None:
                    break
                state = state.after_partial(filled, action.step)
            elif isinstance(action, MoveStop):
                if not self._move_stop(trade, action.new_price, action.reason):
                    break
                state = state.with_stop(action.new_price)
            if trade.closed:
                return
        if state != before:
            trade.state = state

    def _decimal_atr(self, atr: float) -> Decimal:
        """``Decimal(repr(atr))``, kept for the last value (the stop-timeframe ATR changes once an hour)."""
        if self._atr_memo[0] != atr:
            self._atr_memo = (atr, Decimal(repr(atr)))
        return self._atr_memo[1]

    def _close_partial(self, trade: _Trade, quantity: Decimal) -> Decimal | None:
        try:
            fill = self.account.market_order(trade.symbol, trade.side.exit_side, quantity, self._now, reduce_only=True)
        except ExchangeError:
            return None
        self._collect_fills()
        trade.partials += 1
        trade.quantity = max(trade.quantity - fill.quantity, ZERO)
        return fill.quantity

    def _move_stop(self, trade: _Trade, new_price: Decimal, reason: str) -> bool:
        old = trade.stop_price
        if trade.stop is not None and not self.account.cancel(trade.stop):
            return False
        trade.stop = None
        try:
            trade.stop = self._place(trade, ProtectiveKind.STOP_LOSS, new_price)
        except WouldTrigger:
            self._exit(trade, reason)
            return False
        except ExchangeError:
            try:
                trade.stop = self._place(trade, ProtectiveKind.STOP_LOSS, old)
            except ExchangeError:
                self._exit(trade, "stop_unplaceable")
            return False
        trade.stop_price = new_price
        return True

    def _place(self, trade: _Trade, kind: ProtectiveKind, trigger: Decimal) -> Algo:
        return self.account.place_protective(trade.symbol, trade.side.exit_side, kind, trigger, self._now, trade.id)

    def _exit(self, trade: _Trade, reason: str) -> None:
        """Market-close the trade's position (reduce-only), cancel its protective orders, book it."""
        position = self.account.positions.get(trade.symbol)
        if position is None:
            self._collect_fills()
            reason = self._exit_reason(trade)
        else:
            try:
                self.account.market_order(trade.symbol, position.side.exit_side, position.quantity, self._now,
                                          reduce_only=True)
            except OrderRejected:
                log.warning("%s: market close refused; the position stays open", trade.symbol)
                return
            self._collect_fills()
        for algo in (trade.stop, trade.take):
            if algo is not None:
                self.account.cancel(algo)
        self._book(trade, reason)

    def _book(self, trade: _Trade, reason: str) -> None:
        exits = [f for f in trade.fills if f.side is trade.side.exit_side]
        booking = book(trade.side, trade.fills, trade.entry_price)
        exit_price, realized, fees = booking.exit_price, booking.realized_pnl, booking.fees
        funding = sum(trade.funding, ZERO)
        closed_ms = max((f.ms for f in exits), default=self._now)
        net = realized - fees + funding
        trade.closed = True
        del self.trades[trade.id]
        self.closed.append(TradeResult(
            symbol=trade.symbol, side=trade.side, opened_at=_dt(trade.created_ms), closed_at=_dt(closed_ms),
            entry_price=trade.entry_price, exit_price=exit_price, quantity=trade.initial_quantity,
            exit_reason=str(reason), net_pnl=net, fees=fees, funding=funding,
            risk=abs(trade.entry_price - trade.initial_stop) * trade.initial_quantity))
        self._learn(trade, exit_price, net)
        self.breakers.record_trade_closed(ClosedTrade(trade.symbol, net, str(reason)), self._now_dt)

    def _learn(self, trade: _Trade, exit_price: Decimal, net: Decimal) -> None:
        outcome = closed_outcome(
            symbol=trade.symbol, side=trade.side, entry=trade.entry_price, exit_price=exit_price,
            initial_stop=trade.initial_stop, entry_atr=trade.atr, stop_atr_mult=self.config.risk.stop_atr_mult,
            best=trade.state.best_price, worst=trade.state.worst_price,
            opened_at=_dt(trade.created_ms), regime=trade.regime, net_pnl=net, quantity=trade.initial_quantity)
        self.outcomes = [*self.outcomes, outcome][-MAX_OUTCOMES:]
        self._levels.clear()

    # ------------------------------------------------------------------ scan
    def scan(self) -> None:
        now = self._now
        view = ScanView(self.signals, StepIndex(self._scan_index, self._step))
        self.last_scan = view
        self._last_scan_step = self._step
        if not self._candidates[self._step]:
            return
        if self.breakers.entries_blocked(None, self._now_dt) or not view.ranked:
            return
        marks = self.account.marks(now)
        open_positions = []
        for symbol in sorted(self.account.positions):
            p = self.account.positions[symbol]
            mark = marks[symbol]
            h = p.holding
            open_positions.append(OpenPosition(
                symbol, h.side, abs(h.quantity * mark), (mark - h.entry_price) * h.quantity * h.side.sign,
                h.margin_type, h.isolated_margin if h.margin_type is MarginType.ISOLATED else ZERO,
                tuple(self.rules[symbol].brackets)))
        busy = {t.symbol for t in self._active()} | set(self.account.positions)
        for signal in view.ranked:
            if signal.symbol in busy:
                continue
            if self.breakers.entries_blocked(signal.symbol, self._now_dt):
                continue
            trade = self._open(signal, view, open_positions)
            if trade is not None:
                busy.add(signal.symbol)
                open_positions.append(OpenPosition(trade.symbol, trade.side, trade.quantity * trade.entry_price,
                                                   brackets=tuple(self.rules[trade.symbol].brackets)))

    def _open(self, signal: Signal, view: ScanView, open_positions: list[OpenPosition]) -> _Trade | None:
        now = self._now
        rules = self.rules.get(signal.symbol)
        if rules is None or not rules.is_tradable:
            return None
        mark = self.account.mark(signal.symbol, now)
        funding_rate, next_funding = self.account.data[signal.symbol].funding_at(now)
        wallet, equity, available = self.account.balance(now)
        context = view.context(signal.symbol)
        decision = decide_entry(
            signal=signal, rules=rules, mark_price=mark, funding_rate=funding_rate,
            next_funding_time=_dt(next_funding), equity=equity, available=available, wallet=wallet,
            open_positions=open_positions, returns=view.returns([signal.symbol, *(p.symbol for p in open_positions)]),
            context=MarketContext(context.adx, context.atr_ratio, context.atr_pct_history) if context else None,
            outcomes=self.outcomes, now=self._now_dt, risk=self.config.risk, limits=self.config.limits,
            adaptive=self.config.adaptive, margin_type=self.config.margin_type, level_cache=self._levels)
        if decision.plan is None:
            return None
        plan, side, atr, regime = decision.plan, decision.side, decision.atr, decision.regime
        leverage = plan.leverage or self.config.risk.leverage
        self._setup(signal.symbol, leverage)
        trade_id = self._next_id
        self._next_id += 1
        try:
            fill = self.account.market_order(signal.symbol, side.entry_side, plan.quantity, now, reduce_only=False)
        except ExchangeError:
            return None
        stop, take = plan.prices_at(rules, fill.price)
        trade = _Trade(trade_id, signal.symbol, side, fill.quantity, fill.price, stop, stop, take, now,
                       PositionState.opened(trade_id=trade_id, symbol=signal.symbol, side=side,
                                            entry_price=fill.price, quantity=fill.quantity, stop_price=stop,
                                            opened_at=self._now_dt), atr, regime)
        self.trades[trade_id] = trade
        self._collect_fills()
        try:
            trade.stop = self._place(trade, ProtectiveKind.STOP_LOSS, stop)
        except ExchangeError:
            self._exit(trade, "stop_unplaceable")
            return None
        try:
            trade.take = self._place(trade, ProtectiveKind.TAKE_PROFIT, take)
        except ExchangeError:
            trade.take = None
        return trade

    def _setup(self, symbol: str, leverage: int) -> None:
        current, margin_type = self.account.config(symbol)
        if symbol not in self._margin_set:
            margin_type = self.config.margin_type
            self._margin_set.add(symbol)
        if self._leverage_set.get(symbol) != leverage:
            current = leverage
            self._leverage_set[symbol] = leverage
        self.account.set_config(symbol, current, margin_type)


def max_drawdown_pct(equity: np.ndarray) -> float:
    if len(equity) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.maximum(equity, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (peak - equity) / peak * 100.0, 0.0)
    return float(dd.max())


def run_engine(config: FastConfig, rules: Mapping[str, SymbolRules], data: Mapping[str, SymbolData],
               signals: Mapping[str, SymbolSignals], universe: list[str], start: datetime, end: datetime, *,
               gaps: tuple[DataGap, ...] = (), close_at_end: bool = True) -> BacktestResult:
    """Run the fast engine over ``[start, end)`` and package its result."""
    import time

    started = time.perf_counter()
    engine = FastEngine(config, rules, data, signals, universe)
    start_equity, end_equity = engine.run(start, end)
    open_at_end = engine.close_open_trades() if close_at_end else len(engine.trades)
    if close_at_end and open_at_end:
        end_equity = engine.account.balance(engine._now)[1]
    candles = 0
    lo, hi = _ms(start), _ms(end)
    for d in data.values():
        candles += int(np.searchsorted(d.open_time, hi, side="left") - np.searchsorted(d.open_time, lo, side="left"))
    return BacktestResult(
        strategy=config.strategy, engine="fast", symbols=tuple(universe), start=start, end=end,
        start_equity=start_equity, end_equity=end_equity, trades=tuple(engine.closed),
        equity_ms=np.asarray(engine.equity_ms, dtype=np.int64), equity=np.asarray(engine.equity, dtype=np.float64),
        candles=candles, open_at_end=open_at_end, halts=tuple(engine.halts), gaps=gaps,
        wall_seconds=time.perf_counter() - started)
