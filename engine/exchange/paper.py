"""``PaperExchange``: a simulated one-way-mode USDT-M futures account over any ``MarketData`` source.

The account (wallet, positions, per-symbol leverage and margin type, orders, fills, funding) lives in the
``paper_*`` tables, so a restart on the same database resumes the same account and its open protective
orders. Market data methods delegate to the wrapped ``market`` (``HistoricalMarket`` in demos and
backtests, the public Binance API in paper ``run`` mode).

Simulation model
----------------
The pure computations (trigger path, fill prices, fees, funding, liquidation) are ``engine.exchange.fills``;
this class applies them to the persisted account.

- **Time.** Every account method first advances the simulation to ``clock.now()`` (``_catch_up``): for each
  symbol with a position or an open protective order it walks the CLOSED ``trigger_interval`` candles after
  that symbol's cursor, then checks the current mark price. Pure market-data methods do not. A symbol
  that becomes active (first position or order) is walked from the candle containing that moment: the
  fill happened at a price inside it (over ``HistoricalMarket``, at its very open), and older candles are
  never replayed against it. A market whose ``min_interval`` attribute is coarser than the requested
  ``trigger_interval`` (``HistoricalMarket``: 5m) raises the trigger interval to it.
- **Market orders** fill at once, in full, at the mark price moved against the taker by ``slippage_pct``
  percent (a buy pays more) and rounded to the tick away from the taker. Fee = price × qty × taker_fee,
  paid from the wallet. The maker fee is kept for completeness: every simulated fill is a taker fill.
- **Margin.** ISOLATED positions hold ``notional at entry / leverage`` as isolated margin (released pro rata
  on reductions); CROSSED positions use ``notional at mark / leverage``. Available balance = wallet − margin
  of every position + unrealised PnL of cross positions when negative. An order needing more initial
  margin + fee than that is refused (-2019), as is one above the leverage bracket's notional cap (-2027).
- **Protective orders** (close-position STOP_MARKET / TAKE_PROFIT_MARKET on the mark price) are checked
  against each candle along the path open → low → high → close for a long (open → high → low → close for a
  short): adverse moves first, which is the conservative order — if a stop and a take-profit both lie
  inside one candle's range the STOP fills. A candle opening beyond a trigger fills at the open, otherwise
  at the trigger price; both then take adverse slippage, tick rounding and the taker fee. The triggered
  order ends FINISHED with ``triggered_order_id``; the other close-position orders of the symbol EXPIRE
  (Binance expires close-position algo orders once the position is gone), as they do when a market order
  closes the position. An order triggering with no position to close (or on the wrong side) EXPIRES.
- **Liquidation** is one more trigger on the same path at the liquidation price (``engine.exchange.liquidation``,
  brackets from the symbol rules or the conservative default ladder); on a tie it comes before a stop.
  ISOLATED: the position closes at the liquidation price and the rest of its isolated margin is charged as
  a liquidation fee, so the wallet drops by exactly the isolated margin. CROSSED: the loss at the
  liquidation price is realised and the maintenance margin at that price is charged as the fee; other
  positions stay open (their uPnL in the cross liquidation price uses their latest known mark price).
  Liquidation fills carry a client id ``autoclose-<ms>`` as Binance's do.
- **Funding** settlements (``market.funding_rates``) inside a walked candle are charged before its triggers:
  amount = −side × qty × candle open × rate (longs pay positive rates, shorts receive them), once per
  symbol and funding time (``paper_funding`` is unique on both). Isolated positions' margin moves with it.
- **Mark price** is whatever the market reports; over ``HistoricalMarket`` it is the last price.
- **Persistence.** Each step that changes the account (an order, a cancel, a funding payment, a trigger) is
  one database transaction with every cursor advanced so far. Cursor moves over candles where nothing
  happened are kept in memory (a crash replays them to the same outcome) and flushed by ``close()``.
- **Idempotency.** A repeated ``client_id`` returns the existing order instead of Binance's -4116; the
  live adapter maps -4116 to a lookup by client id, so callers see the same outcome either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

import aiosqlite

from core.clock import Clock, from_ms, to_ms
from core.intervals import interval_ms
from engine.exchange import fills
from engine.exchange.errors import (
    InsufficientMargin,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
    WouldTrigger,
)
from engine.exchange.fills import Candle, Hit, Trigger
from engine.exchange.liquidation import (
    DEFAULT_BRACKETS,
    cross_wallet_balance,
    liquidation_price,
    max_leverage,
)
from engine.exchange.protocol import MarketData
from engine.exchange.rules import check_order, check_price
from engine.exchange.types import (
    AccountConfig,
    Balance,
    Fill,
    FundingPayment,
    FundingRate,
    KlineBatch,
    LeverageBracket,
    MarginType,
    MarkPrice,
    OrderResult,
    OrderStatus,
    Position,
    ProtectiveKind,
    ProtectiveOrder,
    ProtectiveStatus,
    Side,
    SymbolRules,
    Ticker24h,
)
from storage.db import Database, DatabaseError
from storage.paper_store import PaperOrder, PaperPosition, PaperStore, SymbolConfig

log = logging.getLogger(__name__)

ZERO = Decimal(0)
ASSET = "USDT"
MARKET = "MARKET"
FIRST_ORDER_ID = 1_000_000
# an order created this soon after a candle's open counts as existing for the whole candle (the backtest
# places its orders 5 s after each candle close, i.e. at the open of the next candle)
MAX_ALGO_ORDERS_PER_SYMBOL = 10  # MAX_NUM_ALGO_ORDERS filter
KLINE_PAGE = 1000
LIQUIDATION = "LIQUIDATION"


@dataclass(slots=True)
class _Book:
    """In-memory account state; a step works on a copy and swaps it in after its transaction commits."""

    wallet: Decimal
    positions: dict[str, PaperPosition] = field(default_factory=dict)
    configs: dict[str, SymbolConfig] = field(default_factory=dict)
    algos: dict[str, PaperOrder] = field(default_factory=dict)  # open protective orders by client id
    cursors: dict[str, int] = field(default_factory=dict)

    def copy(self) -> _Book:
        return _Book(self.wallet, dict(self.positions), dict(self.configs), dict(self.algos), dict(self.cursors))

    def active_symbols(self) -> set[str]:
        return set(self.positions) | {o.symbol for o in self.algos.values()}

    def algos_of(self, symbol: str) -> list[PaperOrder]:
        return [o for o in self.algos.values() if o.symbol == symbol]


class PaperExchange:
    """The ``Exchange`` protocol over a simulated account persisted in SQLite."""

    def __init__(self, db: Database, market: MarketData, clock: Clock, *, start_balance: Decimal,
                 taker_fee: Decimal = Decimal("0.0005"), maker_fee: Decimal = Decimal("0.0002"),
                 slippage_pct: Decimal = Decimal("0.02"), trigger_interval: str = "1m",
                 default_leverage: int = 3, default_margin_type: MarginType = MarginType.ISOLATED) -> None:
        self.db = db
        self.store = PaperStore(db)
        self.market = market
        self.clock = clock
        self.start_balance = Decimal(start_balance)
        self.taker_fee = Decimal(taker_fee)
        self.maker_fee = Decimal(maker_fee)
        self.slippage_pct = Decimal(slippage_pct)
        self.trigger_interval = _effective_interval(trigger_interval, market)
        self._iv_ms = interval_ms(self.trigger_interval)
        self.default_leverage = default_leverage
        self.default_margin_type = MarginType(default_margin_type)
        self._book: _Book | None = None
        self._lock = asyncio.Lock()
        self._rules: dict[str, SymbolRules] | None = None
        self._last_mark: dict[str, Decimal] = {}
        # per symbol: the (frozen) position, protective orders and brackets the triggers were built from, and them
        self._trigger_cache: dict[str, tuple[PaperPosition | None, tuple[PaperOrder, ...],
                                             tuple[LeverageBracket, ...] | None, list[Trigger]]] = {}
        self._dirty_cursors: set[str] = set()
        self._caught_up_ms: int | None = None
        self._next_id = FIRST_ORDER_ID

    # --- life cycle -----------------------------------------------------------------------------
    async def open(self) -> PaperExchange:
        """Load the account; the first time on a database, create it with ``start_balance``."""
        if await self.store.wallet() is None:
            async with self.db.transaction() as conn:
                await PaperStore.create_account(conn, self.start_balance, self._now())
            log.info("paper account created with %s %s", self.start_balance, ASSET)
        wallet = await self.store.wallet()
        assert wallet is not None
        algos = await self.store.orders_with_status(
            tuple(s.value for s in ProtectiveStatus if s.is_open))
        self._book = _Book(wallet, await self.store.positions(), await self.store.symbol_configs(),
                           {o.client_id: o for o in algos}, await self.store.cursors())
        self._next_id = max(await self.store.max_exchange_id() + 1, FIRST_ORDER_ID)
        log.info("paper account: wallet %s, %d positions, %d open protective orders",
                 wallet, len(self._book.positions), len(self._book.algos))
        return self

    @classmethod
    async def create(cls, db: Database, market: MarketData, clock: Clock, *, start_balance: Decimal,
                     **options: object) -> PaperExchange:
        return await cls(db, market, clock, start_balance=start_balance, **options).open()  # type: ignore[arg-type]

    async def close(self) -> None:
        """Flush cursor moves still only in memory, then close the market data source."""
        if self._book is not None and self._dirty_cursors:
            try:
                async with self._lock, self._step():
                    pass
            except DatabaseError:
                log.warning("paper cursors not flushed: database already closed (they will be replayed)")
        await self.market.close()

    @property
    def book(self) -> _Book:
        if self._book is None:
            raise RuntimeError("PaperExchange is not open; call await exchange.open() first")
        return self._book

    @asynccontextmanager
    async def _step(self) -> AsyncIterator[tuple[_Book, aiosqlite.Connection]]:
        """One atomic change: work on a copy of the book, write it, swap it in after commit."""
        book = self.book.copy()
        async with self.db.transaction() as conn:
            yield book, conn
            now = self._now()
            if book.wallet != self.book.wallet:
                await PaperStore.set_wallet(conn, book.wallet, now)
            for symbol in sorted(self._dirty_cursors | _changed_cursors(self.book, book)):
                if symbol in book.cursors:
                    await PaperStore.set_cursor(conn, symbol, book.cursors[symbol])
        self._book = book
        self._dirty_cursors.clear()

    def _activate(self, book: _Book, symbol: str, now: datetime) -> None:
        """A symbol starts being simulated: walk from the candle containing ``now`` (the fill happened at a
        price inside it — over HistoricalMarket at its very open), never from older candles."""
        now_ms = to_ms(now)
        book.cursors[symbol] = now_ms - now_ms % self._iv_ms

    def _now(self) -> datetime:
        """The clock's time at the millisecond, as Binance and the database keep it."""
        return from_ms(to_ms(self.clock.now()))

    def _new_id(self) -> str:
        value = self._next_id
        self._next_id += 1
        return str(value)

    # --- market data (delegated; no simulation step) ----------------------------------------------
    @property
    def answers_inline(self) -> bool:
        """Whether market data answers without waiting on I/O: as the market it delegates to does."""
        return bool(getattr(self.market, "answers_inline", False))

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        self._rules = await self.market.symbol_rules()
        return dict(self._rules)

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     limit: int = 500) -> KlineBatch:
        return await self.market.klines(symbol, interval, start_ms=start_ms, limit=limit)

    async def tickers_24h(self) -> list[Ticker24h]:
        return await self.market.tickers_24h()

    async def mark_price(self, symbol: str) -> MarkPrice:
        return await self.market.mark_price(symbol)

    async def funding_rates(self, symbol: str, start: datetime, end: datetime) -> list[FundingRate]:
        return await self.market.funding_rates(symbol, start, end)

    async def _rules_for(self, symbol: str) -> SymbolRules:
        if self._rules is None:
            self._rules = await self.market.symbol_rules()
        rules = self._rules.get(symbol)
        if rules is None:
            raise UnknownSymbol(f"{symbol}: unknown symbol, not a USD-M perpetual here", code=-1121)
        return rules

    async def _brackets(self, symbol: str) -> tuple[LeverageBracket, ...]:
        return (await self._rules_for(symbol)).brackets or DEFAULT_BRACKETS

    async def _mark(self, symbol: str) -> Decimal:
        """Mark price now (remembered for the cross liquidation price of other positions)."""
        mark = (await self.market.mark_price(symbol)).mark_price
        self._last_mark[symbol] = mark
        return mark

    # --- account ------------------------------------------------------------------------------
    async def account_config(self) -> AccountConfig:
        return AccountConfig(can_trade=True, hedge_mode=False, multi_assets_margin=False)

    async def balance(self) -> Balance:
        async with self._lock:
            await self._catch_up()
            book = self.book
            marks = {s: await self._mark(s) for s in book.positions}
            upnl = sum((_upnl(p, marks[p.symbol]) for p in book.positions.values()), ZERO)
            return Balance(ASSET, book.wallet, _available(book, marks), upnl)

    async def positions(self) -> list[Position]:
        async with self._lock:
            await self._catch_up()
            book = self.book
            out = []
            for symbol in sorted(book.positions):
                p = book.positions[symbol]
                mark = await self._mark(symbol)
                out.append(Position(
                    symbol=symbol, side=p.side, quantity=p.quantity, entry_price=p.entry_price, mark_price=mark,
                    unrealized_pnl=_upnl(p, mark), liquidation_price=await self._liquidation_price(book, p),
                    leverage=p.leverage, margin_type=p.margin_type,
                    isolated_margin=p.isolated_margin if p.margin_type is MarginType.ISOLATED else ZERO,
                    updated_at=p.updated_at))
            return out

    def _config(self, book: _Book, symbol: str) -> SymbolConfig:
        return book.configs.get(symbol) or SymbolConfig(symbol, self.default_leverage, self.default_margin_type)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        async with self._lock:
            await self._catch_up()
            brackets = await self._brackets(symbol)
            top = max(b.initial_leverage for b in brackets)
            if not 1 <= leverage <= top:
                raise OrderRejected(f"{symbol}: leverage {leverage} is not valid (1..{top})", code=-4028)
            position = self.book.positions.get(symbol)
            if position is not None:
                notional = position.quantity * await self._mark(symbol)
                if max_leverage(notional, brackets) < leverage:
                    raise OrderRejected(f"{symbol}: position of {notional:.2f} USDT is too large for "
                                        f"{leverage}x leverage", code=-2027)
            async with self._step() as (book, conn):
                config = replace(self._config(book, symbol), leverage=leverage)
                book.configs[symbol] = config
                await PaperStore.save_symbol_config(conn, config)
                if position is not None:
                    book.positions[symbol] = replace(position, leverage=leverage, updated_at=self._now())
                    await PaperStore.save_position(conn, book.positions[symbol])

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        margin_type = MarginType(margin_type)
        async with self._lock:
            await self._catch_up()
            await self._rules_for(symbol)
            config = self._config(self.book, symbol)
            if config.margin_type is margin_type:
                return  # -4046 "No need to change margin type" is success
            if symbol in self.book.positions:
                raise OrderRejected(f"{symbol}: margin type cannot be changed while a position is open",
                                    code=-4048)
            async with self._step() as (book, conn):
                book.configs[symbol] = replace(config, margin_type=margin_type)
                await PaperStore.save_symbol_config(conn, book.configs[symbol])

    # --- market orders ----------------------------------------------------------------------------
    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_id: str, *,
                                 reduce_only: bool = False) -> OrderResult:
        side = Side(side)
        async with self._lock:
            await self._catch_up()
            existing = await self.store.order(client_id)
            if existing is not None:
                return _existing_market_order(existing)
            rules = await self._rules_for(symbol)
            mark = await self._mark(symbol)
            check_order(rules, quantity, mark, market=True, reduce_only=reduce_only)
            position = self.book.positions.get(symbol)
            fill_qty = _reduce_only_quantity(symbol, side, quantity, position) if reduce_only else quantity
            price = self._slipped(rules, mark, side)
            fee = fills.taker_fee(price, fill_qty, self.taker_fee)
            await self._check_margin(symbol, side, fill_qty, price, fee, position)
            return await self._execute_market(symbol, side, quantity, fill_qty, price, fee, client_id,
                                              reduce_only)

    async def _execute_market(self, symbol: str, side: Side, quantity: Decimal, fill_qty: Decimal,
                              price: Decimal, fee: Decimal, client_id: str, reduce_only: bool) -> OrderResult:
        now = self._now()
        order = PaperOrder(client_id, self._new_id(), symbol, side, MARKET, quantity, None, reduce_only, False,
                           OrderStatus.FILLED.value, fill_qty, price, fee, None, now, now)
        async with self._step() as (book, conn):
            was_active = symbol in book.active_symbols()
            await PaperStore.insert_order(conn, order)
            await self._trade(book, conn, symbol, side, fill_qty, price, fee, order.exchange_id, client_id, now)
            if symbol not in book.positions:
                await self._expire_algos(book, conn, symbol, now)
            elif not was_active:
                self._activate(book, symbol, now)
        log.info("paper %s %s %s @ %s (fee %s)", side.value, fill_qty, symbol, price, fee)
        return _order_result(order)

    async def _check_margin(self, symbol: str, side: Side, quantity: Decimal, price: Decimal, fee: Decimal,
                            position: PaperPosition | None) -> None:
        book = self.book
        opening, released = quantity, ZERO
        if position is not None and position.side.exit_side is side:
            opening = max(quantity - position.quantity, ZERO)
            released = _position_margin(position, await self._mark(symbol)) if opening > 0 else ZERO
        if opening == 0:
            return
        same = position is not None and position.side.entry_side is side
        leverage = position.leverage if same and position is not None else self._config(book, symbol).leverage
        marks = {s: await self._mark(s) for s in book.positions}
        available = _available(book, marks) + released
        required = opening * price / leverage + fee
        if required > available:
            raise InsufficientMargin(
                f"{symbol}: margin is insufficient — needs {required:.4f} {ASSET} (initial margin at "
                f"{leverage}x plus fee), {available:.4f} available", code=-2019)
        total = opening + (position.quantity if same and position is not None else ZERO)
        notional = total * marks.get(symbol, price)
        if max_leverage(notional, await self._brackets(symbol)) < leverage:
            raise OrderRejected(f"{symbol}: a {notional:.2f} USDT position exceeds the maximum allowed at "
                                f"{leverage}x leverage", code=-2027)

    def _slipped(self, rules: SymbolRules, price: Decimal, side: Side) -> Decimal:
        return fills.slipped(rules, price, side, self.slippage_pct)

    async def _trade(self, book: _Book, conn: aiosqlite.Connection, symbol: str, side: Side, quantity: Decimal,
                     price: Decimal, fee: Decimal, order_id: str, client_id: str | None, now: datetime) -> Decimal:
        """Apply one execution to position and wallet, record the fill; return the realised PnL."""
        position = book.positions.get(symbol)
        config = self._config(book, symbol)
        realized, after = _apply_execution(position, config, symbol, side, quantity, price, now)
        book.wallet += realized - fee
        if after is None:
            book.positions.pop(symbol, None)
            await PaperStore.delete_position(conn, symbol)
        else:
            book.positions[symbol] = after
            await PaperStore.save_position(conn, after)
        await PaperStore.insert_fill(conn, order_id=order_id, client_id=client_id, symbol=symbol, side=side,
                                     price=price, quantity=quantity, fee=fee, realized_pnl=realized, time=now)
        return realized

    async def get_order(self, symbol: str, client_id: str) -> OrderResult | None:
        async with self._lock:
            await self._catch_up()
        order = await self.store.order(client_id)
        if order is None or order.close_position or order.symbol != symbol:
            return None
        return _order_result(order)

    # --- protective orders ----------------------------------------------------------------------
    async def place_protective_order(self, symbol: str, side: Side, kind: ProtectiveKind,
                                     trigger_price: Decimal, client_id: str) -> ProtectiveOrder:
        side, kind = Side(side), ProtectiveKind(kind)
        async with self._lock:
            await self._catch_up()
            existing = await self.store.order(client_id)
            if existing is not None:
                if not existing.close_position:
                    raise OrderRejected(f"client id {client_id} is already used by a market order", code=-4116)
                return _protective(existing)
            rules = await self._rules_for(symbol)
            check_price(rules, trigger_price)
            mark = await self._mark(symbol)
            if fills.met(fills.protective_trigger(None, side, kind, trigger_price), mark):
                raise WouldTrigger(f"{symbol}: {kind.value} {side.value} at {trigger_price} would trigger "
                                   f"immediately (mark price {mark})", code=-2021)
            if len(self.book.algos_of(symbol)) >= MAX_ALGO_ORDERS_PER_SYMBOL:
                raise OrderRejected(f"{symbol}: too many open conditional orders", code=-4045)
            now = self._now()
            order = PaperOrder(client_id, self._new_id(), symbol, side, kind.value, None, trigger_price, False,
                               True, ProtectiveStatus.NEW.value, ZERO, ZERO, ZERO, None, now, now)
            async with self._step() as (book, conn):
                if symbol not in book.active_symbols():
                    self._activate(book, symbol, now)
                await PaperStore.insert_order(conn, order)
                book.algos[client_id] = order
            log.info("paper %s %s %s trigger %s placed", symbol, side.value, kind.value, trigger_price)
            return _protective(order)

    async def get_protective_order(self, symbol: str, client_id: str) -> ProtectiveOrder | None:
        async with self._lock:
            await self._catch_up()
        order = await self.store.order(client_id)
        if order is None or not order.close_position or order.symbol != symbol:
            return None
        return _protective(order)

    async def open_protective_orders(self, symbol: str | None = None) -> list[ProtectiveOrder]:
        async with self._lock:
            await self._catch_up()
            orders = sorted(self.book.algos.values(), key=lambda o: (o.created_at, int(o.exchange_id)))
            return [_protective(o) for o in orders if symbol is None or o.symbol == symbol]

    async def cancel_protective_order(self, symbol: str, client_id: str) -> None:
        async with self._lock:
            await self._catch_up()
            order = self.book.algos.get(client_id)
            if order is None or order.symbol != symbol:
                raise OrderNotFound(f"{symbol}: no open conditional order {client_id}", code=-2011)
            async with self._step() as (book, conn):
                del book.algos[client_id]
                await PaperStore.update_order_status(conn, client_id, ProtectiveStatus.CANCELED.value,
                                                     self._now())

    async def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return []  # the simulation has market and conditional orders only

    async def cancel_all_orders(self, symbol: str) -> None:
        for order in await self.open_protective_orders(symbol):
            with contextlib.suppress(OrderNotFound):
                await self.cancel_protective_order(symbol, order.client_id)

    async def _expire_algos(self, book: _Book, conn: aiosqlite.Connection, symbol: str, now: datetime) -> None:
        for order in book.algos_of(symbol):
            del book.algos[order.client_id]
            await PaperStore.update_order_status(conn, order.client_id, ProtectiveStatus.EXPIRED.value, now)

    # --- history --------------------------------------------------------------------------------
    async def fills(self, symbol: str, start: datetime) -> list[Fill]:
        async with self._lock:
            await self._catch_up()
        return [Fill(f.symbol, str(f.id), f.order_id, f.side, f.price, f.quantity, f.fee, ASSET, f.realized_pnl,
                     f.time, f.client_id) for f in await self.store.fills(symbol, start)]

    async def funding_payments(self, symbol: str, start: datetime) -> list[FundingPayment]:
        async with self._lock:
            await self._catch_up()
        return [FundingPayment(f.symbol, f.amount, f.funding_time, f.rate)
                for f in await self.store.funding(symbol, start)]

    # --- simulation of time -------------------------------------------------------------------------
    async def _catch_up(self) -> None:
        """Advance every symbol with a position or an open protective order to ``clock.now()``."""
        now_ms = to_ms(self.clock.now())
        if now_ms == self._caught_up_ms:
            return
        for symbol in sorted(self.book.active_symbols()):
            await self._advance_candles(symbol, now_ms)
            if symbol in self.book.active_symbols():
                await self._check_mark(symbol)
        self._caught_up_ms = now_ms

    async def _advance_candles(self, symbol: str, now_ms: int) -> None:
        cursor = self.book.cursors.get(symbol, now_ms)
        while cursor + self._iv_ms <= now_ms and symbol in self.book.active_symbols():
            batch = await self.market.klines(symbol, self.trigger_interval, start_ms=cursor, limit=KLINE_PAGE)
            candles = [_candle(batch, i) for i in range(len(batch))
                       if int(batch.open_time[i]) >= cursor and int(batch.open_time[i]) + self._iv_ms <= now_ms]
            if not candles:
                break
            funding = await self._funding_between(symbol, candles)
            await self._walk(symbol, candles, funding)
            cursor = candles[-1].open_ms + self._iv_ms
            if len(batch) < KLINE_PAGE:
                break

    async def _funding_between(self, symbol: str, candles: list[Candle]) -> list[FundingRate]:
        if symbol not in self.book.positions:
            return []
        start, end = from_ms(candles[0].open_ms), from_ms(candles[-1].open_ms + self._iv_ms - 1)
        return await self.market.funding_rates(symbol, start, end)

    async def _walk(self, symbol: str, candles: list[Candle], funding: list[FundingRate]) -> None:
        """Apply the candles in order; steps with an event commit at once, quiet ones only move the cursor."""
        pending = sorted(funding, key=lambda f: f.funding_time)
        for candle in candles:
            end_ms = candle.open_ms + self._iv_ms
            due = [f for f in pending if to_ms(f.funding_time) < end_ms]
            pending = pending[len(due):]
            due = [f for f in due if to_ms(f.funding_time) >= candle.open_ms]
            if due or await self._may_trigger(symbol, candle):
                async with self._step() as (book, conn):
                    for rate in due:
                        await self._settle_funding(book, conn, symbol, rate, candle.open)
                    await self._resolve(book, conn, symbol, candle=candle)
                    book.cursors[symbol] = end_ms
            else:
                self.book.cursors[symbol] = end_ms
                self._dirty_cursors.add(symbol)
            if symbol not in self.book.active_symbols():
                return

    async def _may_trigger(self, symbol: str, candle: Candle) -> bool:
        """Could any order or the liquidation level be reached in this candle? (No write when not.)"""
        return any(fills.reach(t, candle) for t in await self._triggers(self.book, symbol))

    async def _check_mark(self, symbol: str) -> None:
        mark = await self._mark(symbol)
        triggers = await self._triggers(self.book, symbol)
        if any(fills.met(t, mark) for t in triggers):
            async with self._step() as (book, conn):
                await self._resolve(book, conn, symbol, mark=mark)

    async def _settle_funding(self, book: _Book, conn: aiosqlite.Connection, symbol: str, rate: FundingRate,
                              price: Decimal) -> None:
        position = book.positions.get(symbol)
        if position is None or rate.funding_time < position.opened_at:
            return  # only positions held at the funding time pay or receive
        amount = fills.funding_amount(position.side, position.quantity, price, rate.rate)
        if not await PaperStore.insert_funding(conn, symbol, rate.funding_time, rate.rate, amount):
            return  # already settled
        book.wallet += amount
        if position.margin_type is MarginType.ISOLATED:
            book.positions[symbol] = replace(position, isolated_margin=position.isolated_margin + amount,
                                             updated_at=rate.funding_time)
            await PaperStore.save_position(conn, book.positions[symbol])
        log.debug("paper funding %s %s at %s: %s", symbol, rate.rate, rate.funding_time, amount)

    async def _triggers(self, book: _Book, symbol: str) -> list[Trigger]:
        algos = tuple(book.algos_of(symbol))
        position = book.positions.get(symbol)
        # An isolated position's liquidation price depends on that (frozen) position and the brackets alone: the
        # triggers are kept while the very same objects are in the book (a cross one's moves with the other
        # positions' marks: computed every time). A candle step asks twice (range, then mark): computed once.
        cacheable = position is None or position.margin_type is MarginType.ISOLATED
        brackets = await self._brackets(symbol) if position is not None and cacheable else None
        cached = self._trigger_cache.get(symbol)
        if (cacheable and cached is not None and cached[0] is position and cached[2] is brackets
                and len(cached[1]) == len(algos) and all(a is b for a, b in zip(cached[1], algos, strict=True))):
            return list(cached[3])
        out = [fills.protective_trigger(o, o.side, o.order_type, o.trigger_price or ZERO) for o in algos]
        if position is not None:
            lp = await self._liquidation_price(book, position)
            if lp > 0:
                out.append(fills.liquidation_trigger(position.side, lp))
        if cacheable:
            self._trigger_cache[symbol] = (position, algos, brackets, list(out))
        else:
            self._trigger_cache.pop(symbol, None)
        return out

    async def _resolve(self, book: _Book, conn: aiosqlite.Connection, symbol: str, *,
                       candle: Candle | None = None, mark: Decimal | None = None) -> None:
        """Fire the triggers met in ``candle`` (or at ``mark``) in path order until the position is gone."""
        while True:
            hit = await self._first_hit(book, symbol, candle, mark)
            if hit is None:
                return
            position = book.positions.get(symbol)
            up = fills.up_first(position.side if position is not None else None)
            when = self._now() if candle is None else from_ms(fills.event_ms(candle, hit, self._iv_ms, up))
            order = hit.trigger.ref
            if not isinstance(order, PaperOrder):
                assert position is not None
                await self._liquidate(book, conn, position, hit.trigger.level, when)
            elif position is None or position.side.exit_side is not order.side:
                del book.algos[order.client_id]
                await PaperStore.update_order_status(conn, order.client_id, ProtectiveStatus.EXPIRED.value, when)
                continue
            else:
                await self._fire(book, conn, position, order, hit.price, when)
            await self._expire_algos(book, conn, symbol, when)
            return

    async def _first_hit(self, book: _Book, symbol: str, candle: Candle | None,
                         mark: Decimal | None) -> Hit | None:
        position = book.positions.get(symbol)
        triggers = [t for t in await self._triggers(book, symbol)
                    if candle is None or self._existed_for(book, symbol, t, candle)]
        return fills.first_hit(triggers, candle, mark, fills.up_first(position.side if position else None))

    def _existed_for(self, book: _Book, symbol: str, trigger: Trigger, candle: Candle) -> bool:
        """``fills.existed_from_open`` for an order or the position."""
        if isinstance(trigger.ref, PaperOrder):
            born = trigger.ref.created_at
        else:
            position = book.positions.get(symbol)
            if position is None:
                return False
            born = position.opened_at
        return fills.existed_from_open(to_ms(born), candle)

    async def _fire(self, book: _Book, conn: aiosqlite.Connection, position: PaperPosition, order: PaperOrder,
                    price: Decimal, when: datetime) -> None:
        rules = await self._rules_for(position.symbol)
        fill_price = self._slipped(rules, price, order.side)
        fee = fills.taker_fee(fill_price, position.quantity, self.taker_fee)
        triggered_id = self._new_id()
        realized = await self._trade(book, conn, position.symbol, order.side, position.quantity, fill_price, fee,
                                     triggered_id, order.client_id, when)
        del book.algos[order.client_id]
        await PaperStore.update_order_status(conn, order.client_id, ProtectiveStatus.FINISHED.value, when,
                                             triggered_order_id=triggered_id)
        log.info("paper %s %s triggered at %s: filled %s @ %s, pnl %s, fee %s", position.symbol,
                 order.order_type, price, position.quantity, fill_price, realized, fee)

    async def _liquidate(self, book: _Book, conn: aiosqlite.Connection, position: PaperPosition,
                         level: Decimal, when: datetime) -> None:
        rules = await self._rules_for(position.symbol)
        liq = fills.liquidation_fill(rules, position.side, position.quantity, position.entry_price, level,
                                     position.margin_type, position.isolated_margin,
                                     await self._brackets(position.symbol))
        price, realized, fee = liq.price, liq.realized, liq.fee
        client_id = f"autoclose-{to_ms(when)}"
        await self._trade(book, conn, position.symbol, position.side.exit_side, position.quantity, price, fee,
                          self._new_id(), client_id, when)
        log.warning("paper %s %s position LIQUIDATED at %s: pnl %s, liquidation fee %s", position.symbol,
                    position.side.value, price, realized, fee)

    async def _liquidation_price(self, book: _Book, position: PaperPosition) -> Decimal:
        brackets = await self._brackets(position.symbol)
        if position.margin_type is MarginType.ISOLATED:
            wallet = position.isolated_margin
        else:
            others = [p for p in book.positions.values()
                      if p.symbol != position.symbol and p.margin_type is MarginType.CROSSED]
            isolated = sum((p.isolated_margin for p in book.positions.values()
                            if p.margin_type is MarginType.ISOLATED), ZERO)
            pairs = []
            for p in others:
                mark = self._last_mark.get(p.symbol, p.entry_price)
                pairs.append((p.quantity * mark, _upnl(p, mark)))
            wallet = cross_wallet_balance(book.wallet - isolated, pairs,
                                          [await self._brackets(p.symbol) for p in others])
        return liquidation_price(position.side, position.quantity, position.entry_price, wallet, brackets)


# --- pure helpers -------------------------------------------------------------------------------------
def _effective_interval(requested: str, market: MarketData) -> str:
    finest = getattr(market, "min_interval", None)
    if isinstance(finest, str) and interval_ms(finest) > interval_ms(requested):
        log.info("trigger interval %s is finer than the market data (%s): using %s", requested, finest, finest)
        return finest
    return requested


def _changed_cursors(before: _Book, after: _Book) -> set[str]:
    return {s for s, v in after.cursors.items() if before.cursors.get(s) != v}


def _candle(batch: KlineBatch, i: int) -> Candle:
    return Candle(int(batch.open_time[i]), _dec(batch.open[i]), _dec(batch.high[i]), _dec(batch.low[i]),
                   _dec(batch.close[i]))


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _upnl(p: PaperPosition, mark: Decimal) -> Decimal:
    return fills.unrealized_pnl(_holding(p), mark)


def _position_margin(p: PaperPosition, mark: Decimal) -> Decimal:
    return fills.position_margin(_holding(p), mark)


def _available(book: _Book, marks: dict[str, Decimal]) -> Decimal:
    margin = sum((_position_margin(p, marks[s]) for s, p in book.positions.items()), ZERO)
    cross_upnl = sum((_upnl(p, marks[s]) for s, p in book.positions.items()
                      if p.margin_type is MarginType.CROSSED), ZERO)
    return max(book.wallet - margin + min(cross_upnl, ZERO), ZERO)


def _reduce_only_quantity(symbol: str, side: Side, quantity: Decimal, position: PaperPosition | None) -> Decimal:
    """A reduce-only order needs a position on the other side; it is cut to the position's size."""
    if position is None or position.side.exit_side is not side:
        raise OrderRejected(f"{symbol}: reduce-only {side.value} order rejected: no position it would reduce",
                            code=-2022)
    return min(quantity, position.quantity)


def _holding(p: PaperPosition) -> fills.Holding:
    return fills.Holding(p.side, p.quantity, p.entry_price, p.leverage, p.margin_type, p.isolated_margin)


def _apply_execution(position: PaperPosition | None, config: SymbolConfig, symbol: str, side: Side,
                     quantity: Decimal, price: Decimal, now: datetime) -> tuple[Decimal, PaperPosition | None]:
    """New position after an execution, and the PnL it realises (``fills.execute``; flips allowed)."""
    realized, after, opened = fills.execute(None if position is None else _holding(position), side, quantity, price,
                                            leverage=config.leverage, margin_type=config.margin_type)
    if after is None:
        return realized, None
    if opened or position is None:
        return realized, PaperPosition(symbol, after.side, after.quantity, after.entry_price, after.leverage,
                                       after.margin_type, after.isolated_margin, now, now)
    return realized, replace(position, quantity=after.quantity, entry_price=after.entry_price,
                             isolated_margin=after.isolated_margin, updated_at=now)


def _order_result(o: PaperOrder) -> OrderResult:
    return OrderResult(symbol=o.symbol, client_id=o.client_id, exchange_id=o.exchange_id, side=o.side,
                       status=OrderStatus(o.status), quantity=o.quantity or ZERO, filled_quantity=o.filled_quantity,
                       avg_price=o.avg_price, reduce_only=o.reduce_only, time=o.created_at, fee=o.fee)


def _existing_market_order(o: PaperOrder) -> OrderResult:
    if o.close_position:
        raise OrderRejected(f"client id {o.client_id} is already used by a conditional order", code=-4116)
    return _order_result(o)


def _protective(o: PaperOrder) -> ProtectiveOrder:
    return ProtectiveOrder(symbol=o.symbol, client_id=o.client_id, exchange_id=o.exchange_id, side=o.side,
                           kind=ProtectiveKind(o.order_type), trigger_price=o.trigger_price or ZERO,
                           status=ProtectiveStatus(o.status), time=o.created_at,
                           triggered_order_id=o.triggered_order_id)

