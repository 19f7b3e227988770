"""Prometheus metrics for Grafana (``METRICS_PORT``), served by prometheus_client on its own thread.

Gauges are refreshed on the event loop after every finished monitor tick (one balance request, the rest
from the database); job durations are observed as the scheduler reports them. The HTTP thread only reads
the registry, so a scrape never touches the exchange or the database.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from engine.exchange.errors import ExchangeError
from engine.trading.halts import load_halts
from storage.notifications import NotificationQueue

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)

TRADING_STATES = ("running", "paused", "stopped", "halted (kill-switch)")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class MetricsError(Exception):
    """The metrics endpoint cannot be served; the message says what to change."""


class VigilMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds
        self.equity = Gauge("vigil_equity_usdt", "Account equity (wallet + unrealised P&L)", ["mode"], registry=r)
        self.wallet = Gauge("vigil_wallet_usdt", "Wallet balance", ["mode"], registry=r)
        self.unrealized = Gauge("vigil_unrealized_pnl_usdt", "Unrealised P&L of open positions", ["mode"],
                                registry=r)
        self.realized = Gauge("vigil_realized_pnl_usdt", "Realised net P&L of all closed trades (after fees and "
                              "funding)", ["mode"], registry=r)
        self.open_positions = Gauge("vigil_open_positions", "Open trades in the books", ["mode"], registry=r)
        self.closed_trades = Gauge("vigil_closed_trades", "Closed trades", ["mode"], registry=r)
        self.live = Gauge("vigil_live_mode", "1 when trading live, 0 in paper mode", registry=r)
        self.state = Gauge("vigil_trading_state", "1 for the current halt state", ["state"], registry=r)
        self.breaker = Gauge("vigil_breaker_tripped", "1 while the circuit breaker is tripped", ["breaker"],
                             registry=r)
        self.job_duration = Histogram("vigil_job_duration_seconds", "Duration of scan and monitor runs", ["job"],
                                      buckets=DURATION_BUCKETS, registry=r)
        self.job_last_duration = Gauge("vigil_job_last_duration_seconds", "Duration of the last run", ["job"],
                                       registry=r)
        self.job_failures = Gauge("vigil_job_failures", "Failed runs since start", ["job"], registry=r)
        self.weight = Gauge("vigil_exchange_used_weight", "Binance request weight used this minute", registry=r)
        self.weight_limit = Gauge("vigil_exchange_weight_limit", "Binance request-weight limit per minute",
                                  registry=r)
        self.errors = Gauge("vigil_exchange_errors", "Failed Binance requests since start, by error",
                            ["error"], registry=r)
        self.notifications = Gauge("vigil_notifications_queued", "Telegram notifications waiting to be sent",
                                   registry=r)
        self.refresh_failures = Counter("vigil_metrics_refresh_failures", "Metric refreshes that failed",
                                        registry=r)

    def observe_job(self, name: str, duration: float) -> None:
        self.job_duration.labels(name).observe(duration)
        self.job_last_duration.labels(name).set(duration)

    async def refresh(self, runtime: Runtime) -> None:
        """Read the account, books, breakers and queues once; keeps the old values of what fails."""
        mode = runtime.mode
        self.live.set(1 if mode == "live" else 0)
        try:
            balance = await runtime.exchange.balance()
        except ExchangeError as exc:
            self.refresh_failures.inc()
            log.debug("metrics: balance unavailable (%s)", exc)
        else:
            self.equity.labels(mode).set(float(balance.equity))
            self.wallet.labels(mode).set(float(balance.wallet_balance))
            self.unrealized.labels(mode).set(float(balance.unrealized_pnl))
        repos = runtime.repos
        closed = await repos.trades.closed(mode)
        self.realized.labels(mode).set(float(sum((t.net_pnl for t in closed), Decimal(0))))
        self.closed_trades.labels(mode).set(len(closed))
        self.open_positions.labels(mode).set(len(await repos.trades.active(mode)))
        halts = await load_halts(repos.state)
        for state in TRADING_STATES:
            self.state.labels(state).set(1 if halts.label == state else 0)
        tripped: dict[str, bool] = {}
        for status in await runtime.trader.breakers.states(runtime.clock.now()):
            tripped[status.name] = tripped.get(status.name, False) or status.tripped
        for name, on in tripped.items():
            self.breaker.labels(name).set(1 if on else 0)
        if runtime.scheduler is not None:
            for name, stats in runtime.scheduler.stats.items():
                self.job_failures.labels(name).set(stats.failures)
        binance = runtime.binance
        if binance is not None:
            self.weight.set(binance.used_weight)
            self.weight_limit.set(binance.weight.limit)
            for error, count in binance.errors.items():
                self.errors.labels(error).set(count)
        self.notifications.set(await NotificationQueue(repos.db).pending_count())


class MetricsServer:
    """The /metrics HTTP endpoint on ``host:port``."""

    def __init__(self, metrics: VigilMetrics, host: str, port: int) -> None:
        self.metrics, self.host, self.port = metrics, host, port
        self._server: Any = None
        self._thread: Any = None

    def start(self) -> MetricsServer:
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.metrics.registry)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.host}:{self.port} ({exc.strerror or exc}); "
                               "free the port or change METRICS_PORT / METRICS_HOST") from None
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
