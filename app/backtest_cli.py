"""``python main.py backtest`` (arguments in ``app.backtest_args``): validate the request, run the chosen engine,
print the summary, write the JSON and PNG.

Engines:
- ``--strategy ema-cross``: the vectorised EMA-cross engine (``engine.backtest.ema_cross``), always.
- ``--strategy default --engine replay``: the live trader over the paper exchange (``app.backtest.replay``).
- ``--strategy default --engine fast``: ``engine.backtest.fast.run_fast_backtest`` when it exists; until then the
  command says so and runs the replay.
Every bad input ends with one line on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np

from core.clock import to_ms
from engine.backtest.data import CANDLE_MS, Candles, DataError, available_symbols, load_candles, load_rules
from engine.backtest.results import BacktestResult
from engine.sweeps.runner import SweepError
from settings import Settings

EXIT_USAGE = 2


class BacktestInputError(ValueError):
    """A request the backtest cannot run; the message is the one line the user sees."""


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    symbols: list[str]
    start: datetime
    end: datetime
    strategy: str
    engine: str
    data_dir: Path
    exchange_info: Path | None
    json_path: Path | None
    report_dir: Path | None
    operator_reset_after: timedelta | None


def parse_day(value: str, flag: str) -> datetime:
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d")
    except ValueError:
        raise BacktestInputError(f"{flag} must be a date like 2024-01-31, got {value!r}") from None
    return day.replace(tzinfo=UTC)


def parse_request(args: argparse.Namespace) -> Request:
    start, end = parse_day(args.start, "--start"), parse_day(args.end, "--end")
    if end <= start:
        raise BacktestInputError(f"--end ({args.end}) must be after --start ({args.start}); the end day is excluded")
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise BacktestInputError("--symbols is empty; give e.g. --symbols BTCUSDT,ETHUSDT")
    data_dir: Path = args.data_dir
    if not data_dir.is_dir():
        raise BacktestInputError(f"--data-dir {data_dir} is not a folder")
    known = available_symbols(data_dir)
    unknown = [s for s in symbols if s not in known]
    if unknown:
        raise BacktestInputError(f"unknown symbol {', '.join(unknown)}: no {unknown[0]}-5m.csv.gz in {data_dir} "
                                 f"(available: {', '.join(known) or 'none'})")
    if args.exchange_info is not None and not args.exchange_info.is_file():
        raise BacktestInputError(f"--exchange-info {args.exchange_info} does not exist")
    if args.operator_reset_after is not None and args.operator_reset_after <= 0:
        raise BacktestInputError("--operator-reset-after must be a positive number of days")
    if args.strategy == "ema-cross" and args.engine == "replay":
        raise BacktestInputError("--strategy ema-cross runs on the fast engine only (drop --engine replay)")
    reset = timedelta(days=args.operator_reset_after) if args.operator_reset_after else None
    return Request(symbols, start, end, args.strategy, args.engine, data_dir, args.exchange_info, args.json,
                   args.report, reset)


# --- progress ---------------------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label, self.width = label, width
        self._last = -1.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        fraction = min(done / total, 1.0)
        if fraction - self._last < 0.005 and done < total:
            return
        self._last = fraction
        filled = int(fraction * self.width)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f} %")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


# --- running -------------------------------------------------------------------------------------------------------
def load_window(req: Request) -> dict[str, Candles]:
    """Each symbol's candles in the window (ema-cross: with its startup candles and the candle at the end); one line
    if a symbol has none."""
    from engine.backtest import ema_cross

    out: dict[str, Candles] = {}
    for symbol in req.symbols:
        if req.strategy == "ema-cross":
            candles = ema_cross.load_window(req.data_dir, symbol, req.start, req.end)
        else:
            candles = load_candles(req.data_dir, symbol, req.start, req.end)
        window = candles.split(to_ms(req.end))[0].open_time
        if not np.any(window >= to_ms(req.start)):
            raise BacktestInputError(f"{symbol} has no candles between {req.start:%Y-%m-%d} and {req.end:%Y-%m-%d} "
                                     f"in {req.data_dir}")
        out[symbol] = candles
    return out


def closes_in_window(candles: dict[str, Candles], start: datetime, end: datetime
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    start_ms, end_ms = to_ms(start), to_ms(end)
    out = {}
    for symbol, c in candles.items():
        inside = (c.open_time >= start_ms) & (c.open_time < end_ms)
        out[symbol] = (c.open_time[inside] + CANDLE_MS, c.close[inside])
    return out


def run_ema_cross(req: Request, candles: dict[str, Candles]) -> BacktestResult:
    from engine.backtest import ema_cross

    return ema_cross.run_ema_cross(req.data_dir, req.symbols, req.start, req.end, exchange_info=req.exchange_info,
                                   progress=ProgressBar("ema-cross"), candles=candles)


def run_replay(settings: Settings, req: Request, candles: int) -> BacktestResult:
    from app.backtest import replay
    from engine.backtest.replay import DemoOptions, to_result

    options = DemoOptions(data_dir=req.data_dir, symbols=req.symbols, start=req.start, days=(req.end - req.start).days,
                          quiet=True, exchange_info=req.exchange_info, operator_reset_after=req.operator_reset_after,
                          progress=ProgressBar("replay"))
    result = to_result(asyncio.run(replay(settings, options)), candles=candles)
    return dataclasses.replace(result, start=req.start, end=req.end)   # the window asked for, end exclusive


def fast_engine() -> Callable[..., BacktestResult]:
    """The fast engine for the default strategy (``app.backtest.run_fast_backtest`` over the vectorised signal
    tables), with the keyword interface the command and the sweeps call."""
    from app.backtest import run_fast_backtest

    def run_fast(settings: Settings, *, data_dir: Path, symbols: list[str], start: datetime, end: datetime,
                 exchange_info: Path | None = None, operator_reset_after: timedelta | None = None,
                 progress: object = None) -> BacktestResult:
        return run_fast_backtest(settings, data_dir, symbols, start, end, exchange_info=exchange_info,
                                 operator_reset_after=operator_reset_after)

    return run_fast


def run(settings: Settings, req: Request, err: TextIO) -> tuple[BacktestResult, dict[str, Candles]]:
    wall = time.perf_counter()
    load_rules(req.data_dir, req.symbols, req.exchange_info)   # unknown rules fail before any work
    candles = load_window(req)
    in_window = sum(int(np.count_nonzero((c.open_time >= to_ms(req.start)) & (c.open_time < to_ms(req.end))))
                    for c in candles.values())
    if req.strategy != "ema-cross" and settings.ml_model_file.is_file():
        print(f"vigil: the ML voter ({settings.ml_model_file.name}) is left out of a plain backtest: it was trained "
              "on recorded history, maybe this one; backtest --walk-forward retrains it on the past per fold",
              file=err)
    if req.strategy == "ema-cross":
        result = run_ema_cross(req, candles)
    elif req.engine == "fast":
        result = fast_engine()(settings, data_dir=req.data_dir, symbols=req.symbols, start=req.start, end=req.end,
                               exchange_info=req.exchange_info, operator_reset_after=req.operator_reset_after)
    else:
        result = run_replay(settings, req, in_window)
    gaps = tuple(g for c in candles.values() for g in c.split(to_ms(req.end))[0].gaps() if g.end > req.start)
    result = dataclasses.replace(result, gaps=result.gaps or gaps, wall_seconds=time.perf_counter() - wall)
    for gap in result.gaps:
        print(f"vigil: data gap in {gap.symbol}: {gap.start:%Y-%m-%d %H:%M} → {gap.end:%Y-%m-%d %H:%M} UTC "
              "(no indicator or trade bridges it)", file=err)
    return result, candles


def report(result: BacktestResult, req: Request, candles_closes: dict[str, tuple[np.ndarray, np.ndarray]],
           out: TextIO) -> None:
    from engine.backtest.metrics import compute_metrics
    from engine.backtest.report import render_summary, write_json, write_report_dir

    metrics = compute_metrics(result, closes=candles_closes)
    print(render_summary(result, metrics), file=out)
    if req.json_path is not None:
        print(f"JSON report: {write_json(req.json_path, result, metrics)}", file=out)
    if req.report_dir is not None:
        print(f"chart: {write_report_dir(req.report_dir, result, metrics)}", file=out)


def main(settings: Settings, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        req = parse_request(args)
        if getattr(args, "sweep", None):
            return _sweep(settings, req, args, out)
        if getattr(args, "walk_forward", False):
            from app.walk_forward_cli import run_walk_forward_command

            return run_walk_forward_command(settings, req, args, out, err)
        result, candles = run(settings, req, err)
        report(result, req, closes_in_window(candles, req.start, req.end), out)
    except (BacktestInputError, DataError, ValueError, SweepError) as exc:   # grid, sweep and bad values: one line
        print(f"vigil: {exc}", file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"vigil: cannot read or write {exc.filename or ''}: {exc.strerror or exc}", file=err)
        return EXIT_USAGE
    return 0


def _sweep(settings: Settings, req: Request, args: argparse.Namespace, out: TextIO) -> int:
    from app.backtest_sweep import SweepData, key_types, run_backtest_sweep
    from engine.sweeps.cli import sweep_options

    if req.json_path is not None or req.report_dir is not None:
        raise BacktestInputError("--json and --report describe one backtest; drop them for a --sweep")
    if req.engine == "replay":
        raise BacktestInputError("a --sweep runs on the fast engine (drop --engine replay)")
    options = sweep_options(args, key_types(req.strategy))
    assert options is not None
    load_rules(req.data_dir, req.symbols, req.exchange_info)
    candles = load_window(req)
    data = SweepData(req.strategy, settings, req.data_dir, req.symbols, req.start, req.end, req.exchange_info,
                     req.operator_reset_after, candles, closes_in_window(candles, req.start, req.end))
    run_backtest_sweep(options, data, out)
    return 0
