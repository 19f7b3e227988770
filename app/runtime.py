"""Builds and owns the running engine for one mode: exchange, market data, consensus, trader, scheduler.

``Runtime`` is what ``main.py run`` starts and what the façade talks to. Switching paper/live rebuilds the
exchange and trader on the same database, bus and scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.configs import adaptive_config, barrier_params, breaker_config, exit_config, limits_config, risk_config
from core.clock import Clock, ExchangeClock
from core.enums import Mode
from engine.events import EventBus, Level
from engine.exchange.errors import AccountConfigError, ExchangeError
from engine.exchange.paper import PaperExchange
from engine.exchange.protocol import Exchange, MarketData
from engine.exchange.types import MarginType
from engine.market import MarketDataService
from engine.retrying import Sleep
from engine.trading.breakers import Breakers
from engine.trading.trader import Trader, TraderConfig
from engine.trading.vote_log import VoteLog, VoteLogConfig
from settings import Settings
from storage.repositories import Repositories
from strategies.consensus import Consensus, LearnedConsensus
from strategies.panel import build_voters

if TYPE_CHECKING:
    from app.llm import LlmRuntime
    from app.retrainer import Retrainer
    from engine.exchange.binance import BinanceFutures
    from engine.scheduler import EngineScheduler
    from strategies.llm import LlmPanel
    from strategies.ml_voter import MLVoter

log = logging.getLogger(__name__)

MODE_KEY = "mode"
RETRAIN_KEY = "retrain.last_scheduled"   # when the last RETRAIN_DAYS retrain started (ISO UTC)
TIME_RESYNC_SECONDS = 900
MONITOR_FAILURE_STREAK = 3  # failed monitor ticks in a row that halt entries (API-error breaker) and alert


class MonitorDegraded(Exception):
    """A monitor tick ran, but some trade's reconciliation or exit step failed (each was isolated)."""


def build_consensus(settings: Settings, *, ml: bool = True) -> Consensus:
    """The local panel ``VOTERS`` (default parameters), gated by ``ENTRY_THRESHOLD``, ``MIN_AGREEING_VOTERS`` and
    ``MIN_AGREEMENT``; ``UnknownVoter`` (one line naming the valid voters) for a name that is not one. With ``ml``
    the ML voter joins when its model file is there (``app.ml_panel``)."""
    from app.ml_panel import ml_voter_from_settings

    model = ml_voter_from_settings(settings) if ml else None
    return Consensus([*build_voters(settings.voters), *([model] if model is not None else [])],
                     threshold=settings.entry_threshold, min_agree=settings.min_agreeing_voters,
                     min_agreement=settings.min_agreement)


def vote_log_config(settings: Settings) -> VoteLogConfig:
    return VoteLogConfig(barrier=barrier_params(settings, settings.vote_horizon_hours),
                         retention=timedelta(days=settings.votes_retention_days),
                         entry_interval=settings.timeframes[0], stop_timeframe=settings.stop_atr_timeframe)


def build_vote_log(settings: Settings, repos: Repositories, market: MarketDataService, clock: Clock) -> VoteLog:
    return VoteLog(repos.votes, market, clock, vote_log_config(settings))


def build_market_service(settings: Settings, source: MarketData, clock: Clock) -> MarketDataService:
    return MarketDataService(
        source, clock, timeframes=list(settings.timeframes), history=settings.kline_history,
        max_concurrency=settings.max_concurrent_requests, universe_size=settings.universe_size,
        fixed_symbols=list(settings.symbols), blacklist=list(settings.blacklist),
        min_quote_volume=settings.min_quote_volume_usdt)


def trader_config(settings: Settings, mode: Mode) -> TraderConfig:
    return TraderConfig(mode=mode, risk=risk_config(settings), margin_type=MarginType(settings.margin_type),
                        max_open_positions=settings.max_open_positions, stop_timeframe=settings.stop_atr_timeframe,
                        limits=limits_config(settings), exits=exit_config(settings),
                        adaptive=adaptive_config(settings))


def build_breakers(settings: Settings, repos: Repositories, mode: Mode) -> Breakers:
    return Breakers(repos.state, breaker_config(settings), key_prefix=f"breaker:{mode}:")


def build_trader(settings: Settings, *, mode: Mode, exchange: Exchange, repos: Repositories, bus: EventBus,
                 clock: Clock, market: MarketDataService | None = None, consensus: Consensus | None = None,
                 llm: LlmPanel | None = None, sleep: Sleep | None = None, record_votes: bool = False) -> Trader:
    """``record_votes``: keep the vote book (the running bot, and a replay with ``LEARNED_WEIGHTS=true``); with
    ``LEARNED_WEIGHTS=true`` its learned weights then weigh the panel (``consensus`` or the settings' one)."""
    market = market or build_market_service(settings, exchange, clock)
    vote_log = build_vote_log(settings, repos, market, clock) if record_votes else None
    if vote_log is not None and settings.learned_weights:
        base = consensus or build_consensus(settings)
        consensus = LearnedConsensus(base.voters, vote_log.weights, threshold=base.threshold,
                                     min_agree=base.min_agree, min_agreement=base.min_agreement)
    return Trader(exchange=exchange, market=market,
                  consensus=consensus or build_consensus(settings), repos=repos, bus=bus, clock=clock,
                  config=trader_config(settings, mode), breakers=build_breakers(settings, repos, mode), llm=llm,
                  sleep=sleep, vote_log=vote_log)


async def check_account(exchange: Exchange) -> None:
    """Refuse account set-ups Vigil cannot trade safely (one clear line each)."""
    config = await exchange.account_config()
    if config.hedge_mode:
        raise AccountConfigError("the Binance futures account is in Hedge mode; Vigil trades One-way mode only. "
                                 "Switch Position Mode to One-way in Binance (Preferences) and restart.")
    if config.multi_assets_margin:
        raise AccountConfigError("the Binance futures account is in Multi-Assets mode; Vigil needs Single-Asset "
                                 "mode. Switch it off in Binance (Preferences) and restart.")
    if not config.can_trade:
        raise AccountConfigError("the API key cannot trade futures; enable futures trading for this key")


class Runtime:
    def __init__(self, settings: Settings, repos: Repositories, bus: EventBus, clock: Clock) -> None:
        self.settings = settings
        self.repos = repos
        self.bus = bus
        self.clock = clock
        self.mode = Mode(settings.trading_mode)
        self._exchange: Exchange | None = None
        self._trader: Trader | None = None
        self._binance: BinanceFutures | None = None
        self._last_time_sync = 0.0
        self._monitor_streak = 0
        self.scheduler: EngineScheduler | None = None
        self.llm: LlmRuntime | None = None
        self.retrainer: Retrainer | None = None
        self._waiting_ml_voter: MLVoter | None = None

    @classmethod
    def from_parts(cls, settings: Settings, repos: Repositories, bus: EventBus, clock: Clock, *,
                   exchange: Exchange, trader: Trader) -> Runtime:
        """A runtime around components built elsewhere (backtests, tests); mode switching rebuilds normally."""
        runtime = cls(settings, repos, bus, clock)
        runtime._exchange, runtime._trader, runtime.mode = exchange, trader, trader.mode
        return runtime

    @property
    def exchange(self) -> Exchange:
        if self._exchange is None:
            raise RuntimeError("runtime not started")
        return self._exchange

    @property
    def binance(self) -> BinanceFutures | None:
        """The Binance connection of the current mode (market data in paper mode); None before start."""
        return self._binance

    @property
    def trader(self) -> Trader:
        if self._trader is None:
            raise RuntimeError("runtime not started")
        return self._trader

    def apply_settings(self, new: Settings) -> None:
        """Operator /set: the new settings take effect on the running trader (leverage on its next entry)."""
        self.settings = new
        trader = self.trader
        trader.reconfigure(trader_config(new, trader.mode))
        if self.scheduler is None or not self.scheduler.running("scan"):
            self._configure_panel()  # else ``run_scan`` does before the next scan: no scan mixes two settings

    def _configure_panel(self) -> None:
        """The panel's gates and the ML voter's threshold from the current settings (the operator's /set)."""
        from strategies.ml_voter import MLVoter

        if self._trader is None:
            return
        consensus, s = self._trader.consensus, self.settings
        consensus.threshold = s.entry_threshold
        consensus.min_agree = s.min_agreeing_voters
        consensus.min_agreement = s.min_agreement
        for voter in consensus.voters:
            if isinstance(voter, MLVoter):
                voter.threshold = s.ml_threshold

    async def start(self) -> None:
        """Pick the mode (last explicit switch stored in the database wins over TRADING_MODE) and build."""
        stored = await self.repos.state.get(MODE_KEY)
        mode = Mode(stored) if stored in tuple(Mode) else Mode(self.settings.trading_mode)
        if stored and stored != self.settings.trading_mode:
            log.warning("mode %s comes from the operator's last /paper switch; it overrides TRADING_MODE=%s",
                        stored, self.settings.trading_mode)
        if mode == Mode.LIVE and not self.settings.has_binance_keys:
            raise AccountConfigError("the stored mode is live but BINANCE_API_KEY/BINANCE_API_SECRET are not set")
        await self._activate(mode)

    async def _activate(self, mode: Mode) -> None:
        mode = Mode(mode)
        if self.llm is None:
            from app.llm import build_llm  # with the scheduler and the retrainer: only the bot needs them

            self.llm = build_llm(self.settings, self.repos.db, self.clock)
        exchange = await self._build_exchange(mode)
        try:
            trader = build_trader(self.settings, mode=mode, exchange=exchange, repos=self.repos, bus=self.bus,
                                  clock=self.clock, llm=self.llm.panel, record_votes=True)
            await trader.start()
            if trader.vote_log is not None:
                await trader.vote_log.learn()
                trader.vote_log.on_resolved.append(self.check_retrain)
        except BaseException:
            await exchange.close()
            raise
        self._exchange, self._trader, self.mode = exchange, trader, mode

    async def _build_exchange(self, mode: Mode) -> Exchange:
        s = self.settings
        exchange = await self._connect_binance(mode)
        self._binance = exchange
        self._last_time_sync = time.monotonic()
        if isinstance(self.clock, ExchangeClock):
            self.clock.follow(lambda: exchange.time_offset_ms)
        if mode == Mode.LIVE:
            try:
                await check_account(exchange)
            except BaseException:
                await exchange.close()
                raise
            return exchange
        paper = PaperExchange(self.repos.db, exchange, self.clock, start_balance=s.paper_start_balance,
                              taker_fee=s.paper_taker_fee, maker_fee=s.paper_maker_fee,
                              slippage_pct=s.paper_slippage_pct, trigger_interval=s.paper_trigger_interval,
                              default_leverage=s.leverage, default_margin_type=MarginType(s.margin_type))
        await paper.open()
        return paper

    async def _connect_binance(self, mode: Mode) -> BinanceFutures:
        """Live: the account with keys. Paper: public market data only (keys are never sent)."""
        # imported here: python-binance, aiohttp and dateparser cost half a second of start-up to every command that
        # never talks to Binance (backtests, the demo)
        from engine.exchange.binance import BinanceFutures

        s = self.settings
        if mode == Mode.LIVE:
            return await BinanceFutures.connect(
                api_key=s.binance_api_key.get_secret_value() if s.binance_api_key else None,
                api_secret=s.binance_api_secret.get_secret_value() if s.binance_api_secret else None,
                env=s.binance_env, base_url=s.binance_base_url, weight_budget_pct=s.binance_weight_budget_pct)
        return await BinanceFutures.connect(api_key=None, api_secret=None, env=s.binance_env,
                                            base_url=s.binance_base_url, weight_budget_pct=s.binance_weight_budget_pct)

    async def switch_mode(self, mode: Mode) -> None:
        old_exchange, old_trader = self._exchange, self._trader
        if old_trader is not None:
            await old_trader.retire()  # its job in flight finishes first; it never opens anything afterwards
        try:
            await self._activate(mode)
        except BaseException:
            if old_trader is not None:
                old_trader.reinstate()  # the switch failed: the old mode keeps trading
            raise
        await self.repos.state.set(MODE_KEY, mode, self.clock.now())
        if old_exchange is not None:
            await old_exchange.close()

    async def run_scan(self) -> None:
        self._swap_in_ml_voter()  # a model promoted while the last scan ran
        self._configure_panel()  # settings changed with /set while the last scan ran
        async with self._counting_api_errors():
            await self.trader.scan()

    async def run_monitor(self) -> None:
        """One monitor tick. A tick that raises, or in which a trade's step failed, is a failed tick: it counts
        as an API error, and ``MONITOR_FAILURE_STREAK`` in a row halt entries (API-error breaker) and alert."""
        try:
            if self._binance is not None and time.monotonic() - self._last_time_sync > TIME_RESYNC_SECONDS:
                await self._binance.sync_time()  # keeps the exchange clock (and request timestamps) honest
                self._last_time_sync = time.monotonic()
            report = await self.trader.monitor()
        except Exception as exc:
            await self._monitor_failed(str(exc))
            raise
        if report.failures:
            await self._monitor_failed("; ".join(report.failures))
            raise MonitorDegraded(f"{len(report.failures)} step(s) failed: " + "; ".join(report.failures))
        self._monitor_streak = 0

    async def _monitor_failed(self, why: str) -> None:
        self._monitor_streak += 1
        events = await self.trader.breakers.record_monitor_failure(self._monitor_streak, MONITOR_FAILURE_STREAK,
                                                                  self.clock.now())
        for event in events:
            await self.bus.publish(event)
        if self._monitor_streak == MONITOR_FAILURE_STREAK:
            await self.trader.desk.alert(Level.CRITICAL, f"the position monitor failed {self._monitor_streak} ticks "
                                         f"in a row ({why}); new entries are halted. Check the logs and the account.")

    @contextlib.asynccontextmanager
    async def _counting_api_errors(self) -> AsyncIterator[None]:
        """An exchange error that fails a job feeds the API-error breaker, then fails the job as before."""
        try:
            yield
        except ExchangeError:
            for event in await self.trader.breakers.record_api_error(self.clock.now()):
                await self.bus.publish(event)
            raise

    def start_scheduler(self) -> EngineScheduler:
        from apscheduler.triggers.interval import IntervalTrigger

        from app.retrainer import Retrainer, retrain_command
        from engine.scheduler import EngineScheduler

        s = self.settings
        self.scheduler = EngineScheduler(
            clock=self.clock, bus=self.bus, scan=self.run_scan, monitor=self.run_monitor,
            scan_interval=s.scan_interval_seconds, monitor_interval=s.monitor_interval_seconds,
            scan_delay=s.scan_delay_seconds)
        self.retrainer = self.retrainer or Retrainer(self.bus, self.clock, command=retrain_command(s.ml_model_file),
                                                     timeout=s.retrain_timeout_minutes * 60)
        self.retrainer.on_promoted = self.reload_ml_voter
        self.scheduler.start()
        self.scheduler.scheduler.add_job(
            self.weekly_retrain, IntervalTrigger(hours=1, timezone=UTC), id="retrain", name="ML retrain (when due)",
            max_instances=1, coalesce=True, replace_existing=True)
        return self.scheduler

    async def weekly_retrain(self) -> bool:
        """Hourly: start a retrain when RETRAIN_DAYS have passed since the last scheduled one (kept in the database, so
        restarts do not reset it; the first is RETRAIN_DAYS after the first start) and the ML voter has a model (a bot
        without one has nothing to retrain). True if one started."""
        if self.retrainer is None or not self.settings.ml_model_file.is_file():
            return False
        now = self.clock.now()
        last = await self.repos.state.get(RETRAIN_KEY)
        if last is None:
            await self.repos.state.set(RETRAIN_KEY, now.isoformat(), now)
            return False
        if now - datetime.fromisoformat(last) < timedelta(days=self.settings.retrain_days):
            return False
        started = self.retrainer.start("weekly retrain (RETRAIN_DAYS)")
        if started:
            await self.repos.state.set(RETRAIN_KEY, now.isoformat(), now)
        return started

    async def reload_ml_voter(self) -> str:
        """Put a promoted model into the running panel: read in a thread, swapped in only between scans (a scan
        holds its lock from its first vote to its last, and ``run_scan`` swaps a waiting one in first), so no scan
        mixes two models. Returns what to tell the operator."""
        from app.ml_panel import ml_voter_from_settings

        voter = await asyncio.to_thread(ml_voter_from_settings, self.settings)
        if voter is None or self._trader is None:
            return "The bot loads it at the next start or mode switch."
        self._waiting_ml_voter = voter
        if self.scheduler is None or not self.scheduler.running("scan"):
            self._swap_in_ml_voter()
            return f"Now in use: {voter.description}."
        return f"In use from the next scan: {voter.description}."

    def _swap_in_ml_voter(self) -> None:
        from strategies.ml_voter import MLVoter

        voter, self._waiting_ml_voter = self._waiting_ml_voter, None
        if voter is not None and self._trader is not None:
            consensus = self._trader.consensus
            consensus.voters = (*(v for v in consensus.voters if not isinstance(v, MLVoter)), voter)
            log.info("ML voter reloaded: %s", voter.description)

    async def check_retrain(self) -> None:
        """After the vote book resolved outcomes: retrain (in a child process) if the ML voter's live hit rate fell
        below its out-of-sample one minus RETRAIN_LIVE_MARGIN."""
        s = self.settings
        if self.retrainer is not None and s.ml_model_file.is_file():
            await self.retrainer.check_live(self.repos.votes, s.ml_model_file, window=s.model_live_window,
                                            margin=s.retrain_live_margin)

    def next_scan(self) -> datetime | None:
        return self.scheduler.next_run("scan") if self.scheduler else None

    async def run_job_now(self, name: str) -> None:
        if self.scheduler is not None:
            await self.scheduler.run_now(name)
        elif name == "scan":
            await self.run_scan()
        else:
            await self.run_monitor()

    async def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.retrainer is not None:
            await self.retrainer.close()
        if self._exchange is not None:
            await self._exchange.close()
        if self.llm is not None:
            await self.llm.close()
