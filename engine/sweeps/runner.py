"""Run one task per grid point, serially, on local processes (joblib) or on an existing Dask cluster.

The task is any picklable module-level function ``task(params, data) -> {metric: float}``; ``data`` is
what every point shares (market data, rules, a base config). It must be deterministic: the three ways of
running give the same table, row for row.

- ``jobs=1``: a plain loop in this process.
- ``jobs=N`` (N > 1, or -1 for every core): joblib's loky processes. joblib dumps large numpy arrays inside
  ``data`` once to a memory-mapped file that every worker maps, instead of pickling them per task.
- ``dask_scheduler="tcp://host:8786"`` (or a ``dask_client``): ``data`` is scattered once to every worker
  (``broadcast=True``) and each task receives the worker's copy, so it crosses the network once per
  worker, not once per task. The workers need the same Vigil code and Python packages as this machine.

A task that raises does not stop the sweep: its row carries the error and sorts last.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from engine.sweeps.grid import Value

log = logging.getLogger(__name__)

D = TypeVar("D")
Params = dict[str, Value]
Task = Callable[[Params, D], Mapping[str, float]]
DASK_CONNECT_TIMEOUT = 10.0


class SweepError(Exception):
    """The sweep cannot run (no dask installed, scheduler unreachable, unknown metric); one line."""


class Backend(StrEnum):
    SERIAL = "serial"
    JOBLIB = "joblib"
    DASK = "dask"


@dataclass(frozen=True, slots=True)
class SweepRow:
    index: int
    params: Params
    metrics: dict[str, float]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SweepResult:
    rows: tuple[SweepRow, ...]
    backend: Backend
    workers: int
    wall_seconds: float

    @property
    def failed(self) -> list[SweepRow]:
        return [r for r in self.rows if r.error is not None]

    @property
    def metric_names(self) -> list[str]:
        return list(dict.fromkeys(k for r in self.rows for k in r.metrics))

    def sorted_by(self, metric: str, *, descending: bool = True) -> list[SweepRow]:
        """Rows best first by ``metric``; failed rows and rows without a finite value last, in grid order."""
        if self.rows and metric not in self.metric_names:
            raise SweepError(f"no metric {metric!r} in the results; metrics: {', '.join(self.metric_names) or 'none'}")

        def key(row: SweepRow) -> tuple[int, float, int]:
            value = row.metrics.get(metric, math.nan)
            if row.error is not None or not math.isfinite(value):
                return (1, 0.0, row.index)
            return (0, -value if descending else value, row.index)

        return sorted(self.rows, key=key)

    def table(self, metric: str, *, descending: bool = True, top: int | None = None) -> str:
        """A fixed-width text table, best ``metric`` first."""
        rows = self.sorted_by(metric, descending=descending)[:top]
        keys = list(dict.fromkeys(k for r in self.rows for k in r.params))
        metrics = [metric, *(m for m in self.metric_names if m != metric)]
        header = ["#", *keys, *metrics]
        body = [[str(i), *_cells(r, keys, metrics)] for i, r in enumerate(rows, 1)]
        widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                 for line in [header, *body]]
        order = "highest" if descending else "lowest"
        summary = (f"{len(self.rows)} runs on {self.backend.value} ({self.workers} worker(s)) in "
                   f"{self.wall_seconds:.1f}s, sorted by {metric} ({order} first)")
        if self.failed:
            summary += f"; {len(self.failed)} failed"
        return "\n".join([summary, *lines])


def run_sweep(task: Task[D], points: Sequence[Params], data: D, *, jobs: int = 1, dask_scheduler: str | None = None,
              dask_client: Any = None) -> SweepResult:
    """Run ``task(point, data)`` for every point; rows come back in the order of ``points``."""
    started = time.perf_counter()
    if dask_scheduler is not None or dask_client is not None:
        outcomes, workers = _run_dask(task, points, data, dask_scheduler, dask_client)
        backend = Backend.DASK
    elif jobs == 1 or len(points) <= 1:
        outcomes, workers, backend = [_guarded(task, p, data) for p in points], 1, Backend.SERIAL
    else:
        outcomes, workers = _run_joblib(task, points, data, jobs)
        backend = Backend.JOBLIB
    rows = tuple(SweepRow(i, dict(p), metrics, error)
                 for i, (p, (metrics, error)) in enumerate(zip(points, outcomes, strict=True)))
    for row in rows:
        if row.error is not None:
            log.warning("sweep point %s failed: %s", row.params, row.error)
    return SweepResult(rows, backend, workers, time.perf_counter() - started)


def _guarded(task: Task[D], params: Params, data: D) -> tuple[dict[str, float], str | None]:
    """One task; its exception or a non-numeric answer becomes the row's error instead of ending the sweep."""
    try:
        raw = task(dict(params), data)
        return {str(k): float(v) for k, v in raw.items()}, None
    except Exception as exc:  # a bad point must not lose the other results
        return {}, f"{type(exc).__name__}: {exc}"


def _run_joblib(task: Task[D], points: Sequence[Params], data: D,
                jobs: int) -> tuple[list[tuple[dict[str, float], str | None]], int]:
    from joblib import Parallel, delayed, effective_n_jobs

    workers = min(effective_n_jobs(jobs), len(points))
    outcomes = Parallel(n_jobs=workers, backend="loky")(delayed(_guarded)(task, p, data) for p in points)
    return list(outcomes), workers


def _run_dask(task: Task[D], points: Sequence[Params], data: D, address: str | None,
              client: Any) -> tuple[list[tuple[dict[str, float], str | None]], int]:
    own = client is None
    if own:
        client = connect_dask(address or "")
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        if workers == 0:
            raise SweepError("the Dask cluster has no workers; start some (dask worker ADDRESS) and try again")
        # One copy per worker, not per task. Scattered inside a list so that a dict or list ``data`` travels as
        # one object (scatter would otherwise split a collection into one future per item).
        [shared] = client.scatter([data], broadcast=True, hash=False)
        futures = [client.submit(_guarded, task, p, shared, pure=False) for p in points]
        try:
            return list(client.gather(futures)), workers
        finally:
            client.cancel([*futures, shared])
    finally:
        if own:
            client.close()


def connect_dask(address: str) -> Any:
    """A ``dask.distributed.Client`` on an existing scheduler, with errors that say what to do."""
    try:
        from distributed import Client
    except ImportError:
        raise SweepError("--dask-scheduler needs dask.distributed: pip install -r requirements-dev.txt") from None
    try:
        return Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(f"could not reach the Dask scheduler at {address!r} ({exc}); check the address "
                         f"(tcp://host:8786) and that the scheduler is running") from None


def _cells(row: SweepRow, keys: list[str], metrics: list[str]) -> list[str]:
    params = [_fmt(row.params.get(k)) for k in keys]
    if row.error is not None:
        error = row.error if len(row.error) <= 60 else row.error[:57] + "..."
        return [*params, f"failed: {error}", *([""] * (len(metrics) - 1))]
    return [*params, *(_fmt(row.metrics.get(m)) for m in metrics)]


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)
