"""``backtest --sweep KEY=v1,v2 ...``: the same backtest over a grid of parameters, through ``engine.sweeps``.

Keys: for ``--strategy ema-cross`` the rule's parameters (``fast``, ``slow``, ``stop``, ``roi``, ``stake``); for the
default strategy any setting (``STOP_ATR_MULT``, ``ENTRY_THRESHOLD``, ...), validated like ``.env``. The candles are
loaded once and shared: joblib maps them into every local process, a Dask cluster gets them once per worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from engine.backtest.data import Candles
from engine.backtest.ema_cross import EmaCrossParams, run_ema_cross
from engine.backtest.metrics import compute_metrics
from engine.backtest.results import BacktestResult
from engine.sweeps.cli import SweepOptions
from engine.sweeps.grid import GridError, Value
from engine.sweeps.runner import SweepError, run_sweep
from settings import Settings, format_validation_error

EMA_CROSS_KEYS: dict[str, type] = {"fast": int, "slow": int, "stop": float, "roi": float, "stake": float}
METRICS = ("net_pnl", "return_pct", "sharpe", "sortino", "calmar", "max_drawdown_pct", "profit_factor", "win_rate",
           "trades", "fees")


@dataclass(frozen=True, slots=True)
class SweepData:
    """What every grid point shares (pickled once per worker)."""

    strategy: str
    settings: Settings
    data_dir: Path
    symbols: list[str]
    start: datetime
    end: datetime
    exchange_info: Path | None
    operator_reset_after: timedelta | None
    candles: dict[str, Candles]
    closes: dict[str, Any]


def key_types(strategy: str) -> dict[str, type] | None:
    return EMA_CROSS_KEYS if strategy == "ema-cross" else None


def check_keys(strategy: str, keys: tuple[str, ...], settings: Settings) -> None:
    if strategy == "ema-cross":
        unknown = [k for k in keys if k not in EMA_CROSS_KEYS]
        if unknown:
            raise GridError(f"ema-cross has no parameter {', '.join(unknown)}; sweep {', '.join(EMA_CROSS_KEYS)}")
        return
    fields = {name.upper() for name in Settings.model_fields}
    unknown = [k for k in keys if k.upper() not in fields]
    if unknown:
        raise GridError(f"{', '.join(unknown)}: not a setting (sweep settings such as STOP_ATR_MULT, ENTRY_THRESHOLD)")


def settings_for(base: Settings, params: Mapping[str, Value]) -> Settings:
    """``base`` with the point's values, validated as if they came from ``.env``."""
    values = base.model_dump()
    values.update({k.lower(): v for k, v in params.items()})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ValueError("; ".join(format_validation_error(exc))) from None


def backtest_task(params: dict[str, Value], data: SweepData) -> dict[str, float]:
    """One grid point: the backtest with these parameters, summarised by the sweep's metrics."""
    if data.strategy == "ema-cross":
        result = run_ema_cross(data.data_dir, data.symbols, data.start, data.end, exchange_info=data.exchange_info,
                               params=dataclasses.replace(EmaCrossParams(), **params), candles=data.candles)
    else:
        result = _default_strategy(params, data)
    metrics = compute_metrics(result, closes=data.closes, mc_runs=0)
    return {name: float(getattr(metrics, name)) for name in METRICS}


def _default_strategy(params: Mapping[str, Value], data: SweepData) -> BacktestResult:
    from app.backtest_cli import fast_engine

    fast = fast_engine()
    if fast is None:
        raise SweepError("a sweep of the default strategy needs the fast engine, which is not available yet")
    return fast(settings_for(data.settings, params), data_dir=data.data_dir, symbols=data.symbols, start=data.start,
                end=data.end, exchange_info=data.exchange_info, operator_reset_after=data.operator_reset_after,
                progress=None)


def run_backtest_sweep(options: SweepOptions, data: SweepData, out: TextIO) -> None:
    if options.sort_by not in METRICS:
        raise SweepError(f"--sort-by {options.sort_by}: not a sweep metric; use one of {', '.join(METRICS)}")
    check_keys(data.strategy, options.grid.keys, data.settings)
    points = options.grid.points()
    if data.strategy != "ema-cross":
        for point in points:   # a bad value is one line before any work, not one failed row per point
            settings_for(data.settings, point)
    result = run_sweep(backtest_task, points, data, jobs=options.jobs, dask_scheduler=options.dask_scheduler)
    print(f"sweep: {len(points)} points, {result.backend.value} ({result.workers} workers), "
          f"{result.wall_seconds:.1f} s", file=out)
    print(result.table(options.sort_by, descending=options.descending, top=options.top), file=out)
