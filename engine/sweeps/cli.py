"""Command-line options of a sweep, for any command that runs one (``backtest --sweep ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from engine.sweeps.grid import Grid, parse_grid


@dataclass(frozen=True, slots=True)
class SweepOptions:
    grid: Grid
    jobs: int
    dask_scheduler: str | None
    sort_by: str
    descending: bool
    top: int | None


def add_sweep_arguments(parser: argparse.ArgumentParser, *, default_metric: str) -> None:
    group = parser.add_argument_group("parameter sweep")
    group.add_argument("--sweep", action="append", default=[], metavar="KEY=v1,v2",
                       help="sweep KEY over the values (repeat for a grid; lo:hi:step is an inclusive range)")
    group.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="local worker processes for a sweep (default 1; -1 = every core; not used with "
                            "--dask-scheduler)")
    group.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                       help="run the sweep on an existing Dask cluster, e.g. tcp://host:8786 (needs dask[distributed])")
    group.add_argument("--sort-by", default=default_metric, metavar="METRIC",
                       help=f"metric that orders the sweep table (default {default_metric}, highest first)")
    group.add_argument("--ascending", action="store_true", help="lowest --sort-by first (e.g. for drawdown)")
    group.add_argument("--top", type=int, default=None, metavar="N", help="print only the N best rows")


def sweep_options(args: argparse.Namespace, types: Mapping[str, type] | None = None) -> SweepOptions | None:
    """The sweep asked for on the command line, or None without ``--sweep``. Raises ``GridError``/``ValueError``."""
    if not args.sweep:
        return None
    if args.jobs == 0 or args.jobs < -1:
        raise ValueError(f"--jobs must be a positive number of processes or -1, got {args.jobs}")
    if args.top is not None and args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    return SweepOptions(parse_grid(args.sweep, types), args.jobs, args.dask_scheduler, args.sort_by,
                        not args.ascending, args.top)
