"""Evaluation of the voters and the consensus on the real data: signal quality, walk-forward choice of the default,
and (with ``--engine``) the P&L of the fast engine after fees and funding.

Everything below is declared before any result was looked at (``docs/evaluation.md`` states it):

- Rows: every 5m scan of every symbol over the whole span, from the vectorised signal tables (the live scan's
  windows, features, validation and voters). Labels: triple barriers from Vigil's own stop/take-profit rule
  (``app.configs.barrier_params`` on the default Settings, horizon ``VOTE_HORIZON_HOURS`` = 24 h, the vote book's),
  costs included; the entry is the close of the row, the stop ATR the signal's (1h) ATR.
- The grid: ``PANELS`` × ``THRESHOLDS`` × ``MIN_AGREES`` (a single voter only at 1).
- Walk-forward: folds are the calendar quarters from ``FIRST_FOLD`` (the 6 months before are the warm-up); for each
  fold the candidate with the largest total net R of its onsets over the rows whose label ended by the fold start
  (expanding window from the data start, purged), with at least ``MIN_ONSETS`` onsets; "do not trade" (0) is a
  candidate. The choice is applied to the fold.
- ``--engine``: the fast engine (default Settings, drawdown halts reset after a day) over the out-of-sample span on
  ``--engine-symbols``: the former default (``DEFAULT``), each voter alone, all four at 0.6, and the walk-forward
  sequence (each fold's chosen configuration for that fold, one continuous account); buy-and-hold of the same.

Run from the repository root:  .venv/bin/python bench/evaluate.py [--data DIR] [--symbols A,B] [--voters a,b]
[--engine] [--engine-symbols A,B] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.configs import barrier_params  # noqa: E402
from core.clock import ManualClock  # noqa: E402
from engine.exchange.historical import HistoricalMarket  # noqa: E402
from settings import Settings  # noqa: E402
from strategies.consensus import Consensus  # noqa: E402
from strategies.evaluation import (  # noqa: E402
    FLAT,
    Events,
    Fold,
    PanelConfig,
    Selection,
    SignalStats,
    VoteRows,
    calibration,
    concat_rows,
    declared_grid,
    panel_signal,
    quarter_folds,
    select,
    vote_rows,
)
from strategies.labels import segment_ends, triple_barrier  # noqa: E402
from strategies.panel import VOTER_NAMES, build_voters  # noqa: E402
from strategies.signal_table import SignalConfig, SymbolSignals, build_symbol_signals  # noqa: E402
from strategies.types import Direction, Signal  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance-futures"
#: The shared data's symbol rules are in two files (the majors and the alts); the script merges them.
EXCHANGE_INFO = (ROOT.parent / "shared" / "data" / "exchangeinfo" / "binance_usdm_markets.json",
                 ROOT.parent / "shared" / "data" / "exchangeinfo" / "binance_usdm_markets_alts.json")
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,DOGEUSDT,LTCUSDT"
ENGINE_SYMBOLS = SYMBOLS
START = datetime(2023, 1, 1, tzinfo=UTC)
END = datetime(2025, 7, 1, tzinfo=UTC)          # exclusive: the data ends 2025-06-30
FIRST_FOLD = datetime(2023, 7, 1, tzinfo=UTC)   # 6 months of warm-up before it
#: Principled subsets beside each voter alone and all four: the two trend voters; every directional voter (no mean
#: reversion); the regime pair (trend following for trends, mean reversion for ranges).
SUBSETS = (("trend_momentum", "trend_following"), ("trend_momentum", "trend_following", "breakout"),
           ("trend_following", "mean_reversion"))
THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
MIN_AGREES = (1, 2)
MIN_ONSETS = 50
#: The default before this evaluation (``trend_momentum`` alone at 0.6): the baseline the walk-forward is compared with.
DEFAULT = PanelConfig(("trend_momentum",), 0.6, 1)
ROWS_PER_DAY = 288
FIVE_MIN_MS = 300_000


def grid(voters: tuple[str, ...]) -> list[PanelConfig]:
    subsets = [s for s in SUBSETS if set(s) <= set(voters)]
    panels = [(v,) for v in voters] + [voters] + subsets
    return declared_grid(panels, THRESHOLDS, MIN_AGREES)


def merged_exchange_info(files: tuple[Path, ...], into: Path) -> Path | None:
    """One exchangeInfo file with the symbols of every existing file in ``files`` (None when there is none)."""
    symbols = [s for p in files if p.is_file() for s in json.loads(p.read_text())["symbols"]]
    if not symbols:
        return None
    into.write_text(json.dumps({"symbols": symbols}))
    return into


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


# --------------------------------------------------------------------------------------------------
# rows, votes, labels
# --------------------------------------------------------------------------------------------------

class SymbolRows:
    """One symbol: the signal table (all voters, features kept), every voter's arrays, the labels."""

    def __init__(self, table: SymbolSignals, votes: dict[str, tuple[np.ndarray, np.ndarray]], labels: tuple,
                 horizon: int) -> None:
        self.table = table
        self.votes = votes
        self.hit_long, self.hit_short, self.r_long, self.r_short = labels
        self.horizon = horizon
        t = table.open_ms
        self.contiguous = np.concatenate(([False], (np.diff(t) == FIVE_MIN_MS) & table.valid[1:] & table.valid[:-1]))

    def rows(self, direction: np.ndarray, confidence: np.ndarray) -> VoteRows:
        return vote_rows(self.table.open_ms, direction, confidence, self.contiguous, self.hit_long, self.hit_short,
                         self.r_long, self.r_short)

    def panel(self, config: PanelConfig) -> tuple[np.ndarray, np.ndarray]:
        direction, score = panel_signal(config, self.votes)
        valid = self.table.valid
        return np.where(valid, direction, 0).astype(np.int8), np.where(valid, score, 0.0)


def load(market: HistoricalMarket, symbol: str, voters: tuple[str, ...], settings: Settings) -> SymbolRows:
    history = market.base_klines(symbol)
    table = build_symbol_signals(history, Consensus(build_voters(voters)), SignalConfig.from_settings(settings),
                                 keep_features=True)
    votes = {}
    for voter in build_voters(voters):
        d, c = voter.vote_arrays(table)
        d = np.where(table.valid, d, 0).astype(np.int8)
        votes[voter.name] = (d, np.where(d != 0, np.nan_to_num(c), 0.0))
    params = barrier_params(settings, settings.vote_horizon_hours)
    high, low, close = (np.asarray(getattr(history, c), dtype=np.float64) for c in ("high", "low", "close"))
    if not np.array_equal(table.open_ms, history.open_time):
        raise SystemExit(f"{symbol}: unsorted or duplicated candles; the table and the labels would not align")
    lab = triple_barrier(high, low, close, table.atr, params, segment_end=segment_ends(table.open_ms, FIVE_MIN_MS))
    return SymbolRows(table, votes, (lab.long, lab.short, lab.long_outcome, lab.short_outcome), params.horizon)


# --------------------------------------------------------------------------------------------------
# printing
# --------------------------------------------------------------------------------------------------

class Out:
    """Prints, and keeps the markdown of, each table."""

    def __init__(self) -> None:
        self.md: list[str] = []

    def text(self, line: str) -> None:
        print(line)
        self.md.append(line)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        print(flush=True)
        self.md += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        self.md += ["| " + " | ".join(r) + " |" for r in rows]
        self.md.append("")


def f(x: float, digits: int = 3, sign: bool = False) -> str:
    if x != x:  # NaN
        return "–"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def pct(x: float) -> str:
    return "–" if x != x else f"{x:.1%}"


def stats_cells(s: SignalStats, days: float) -> list[str]:
    return [f"{s.votes:,}", f(s.votes / days, 2), pct(s.hit_rate), f(s.brier), f(s.mean_r, 3, True),
            f(s.total_r, 0, True)]


# --------------------------------------------------------------------------------------------------
# 1. signal quality
# --------------------------------------------------------------------------------------------------

def signal_quality(out: Out, data: Mapping[str, SymbolRows], voters: tuple[str, ...], configs: list[PanelConfig],
                   days: float) -> dict[str, VoteRows]:
    voter_rows = {v: concat_rows(d.rows(*d.votes[v]) for d in data.values()) for v in voters}
    config_rows: dict[str, VoteRows] = {}
    for c in configs:
        config_rows[c.name] = concat_rows(d.rows(*d.panel(c)) for d in data.values())
    head = ["votes", "per symbol-day", "hit rate", "Brier", "mean net R", "total net R"]
    out.text(f"\n### Each voter, every vote row and onsets ({days:,.0f} symbol-days)\n")
    rows = []
    for v in voters:
        for kind, only in (("rows", False), ("onsets", True)):
            rows.append([f"`{v}`", kind, *stats_cells(voter_rows[v].stats(onsets_only=only), days)])
    out.table(["voter", "count", *head], rows)
    out.text("\n### Calibration of each voter's confidence (every vote row)\n")
    crow = []
    for v in voters:
        for b in calibration(voter_rows[v].confidence, voter_rows[v].hit):
            crow.append([f"`{v}`", f"{b.lo:.1f}–{b.hi:.1f}", f"{b.count:,}", f(b.mean_confidence),
                         pct(b.hit_rate)])
    out.table(["voter", "confidence", "rows", "mean confidence", "observed hit rate"], crow)
    out.text("\n### Each panel configuration of the grid (onsets; score = the consensus score)\n")
    rows = []
    for c in configs:
        r = config_rows[c.name]
        s_on, s_all = r.stats(onsets_only=True), r.stats()
        rows.append([c.name, f"{s_all.votes:,}", *stats_cells(s_on, days)])
    out.table(["configuration", "vote rows", "onsets", "per symbol-day", "hit rate", "Brier", "mean net R",
               "total net R"], rows)
    return config_rows


def calibration_of(out: Out, title: str, rows: VoteRows) -> None:
    out.text(f"\n### Calibration: {title} (every vote row)\n")
    out.table(["score", "rows", "mean score", "observed hit rate"],
              [[f"{b.lo:.1f}–{b.hi:.1f}", f"{b.count:,}", f(b.mean_confidence), pct(b.hit_rate)]
               for b in calibration(rows.confidence, rows.hit)])


# --------------------------------------------------------------------------------------------------
# 2. walk-forward
# --------------------------------------------------------------------------------------------------

def walk_forward(out: Out, config_rows: Mapping[str, VoteRows], configs: list[PanelConfig], folds: list[Fold],
                 horizon: int, comparators: list[PanelConfig]) -> tuple[list[Selection], Selection]:
    events = {c.name: config_rows[c.name].events(horizon) for c in configs}
    selections = [select(events, fold, min_onsets=MIN_ONSETS) for fold in folds]
    out.text("\n### Walk-forward: each fold's choice (purged in-sample) and its out-of-sample onsets\n")
    rows = []
    for sel in selections:
        oos = _oos(events, sel.chosen, sel.fold)
        last = datetime.fromtimestamp(sel.last_label_end_ms / 1000, UTC) if sel.last_label_end_ms > 0 else None
        rows.append([sel.fold.name, sel.chosen, f(sel.score, 1, True), f"{last:%Y-%m-%d %H:%M}" if last else "–",
                     f"{oos.votes:,}", pct(oos.hit_rate), f(oos.total_r, 1, True)])
    out.table(["fold", "chosen", "in-sample total R", "last in-sample label end", "OOS onsets", "OOS hit rate",
               "OOS total R"], rows)
    out.text("\n### Walk-forward: out-of-sample total net R of onsets per fold, against fixed configurations\n")
    names = ["walk-forward"] + [c.name for c in comparators]
    rows = []
    totals = {n: [0, 0, 0.0] for n in names}
    for sel in selections:
        cells = [sel.fold.name]
        for n in names:
            s = _oos(events, sel.chosen if n == "walk-forward" else n, sel.fold)
            totals[n][0] += s.votes
            totals[n][1] += s.hits
            totals[n][2] += s.total_r
            cells.append(f"{f(s.total_r, 1, True)} ({s.votes:,})")
        rows.append(cells)
    rows.append(["**stitched**"] + [f"**{f(t[2], 1, True)}** ({t[0]:,}; hit {pct(t[1] / t[0] if t[0] else np.nan)})"
                                    for t in totals.values()])
    out.table(["fold", *names], rows)
    after = Fold(folds[-1].end_ms, folds[-1].end_ms + 1)
    nxt = select(events, after, min_onsets=MIN_ONSETS)
    top = sorted(nxt.in_sample.items(), key=lambda kv: -kv[1].total_r)[:5]
    out.text(f"\nThe same rule on every purged row up to {datetime.fromtimestamp(after.start_ms / 1000, UTC):%Y-%m-%d} "
             f"(the choice for the next quarter): **{nxt.chosen}** (in-sample total R {f(nxt.score, 1, True)}). "
             "Best five in-sample: " + "; ".join(f"{n} {f(s.total_r, 1, True)} R on {s.votes:,} onsets"
                                               for n, s in top) + ".")
    return selections, nxt


def _oos(events: Mapping[str, Events], name: str, fold: Fold) -> SignalStats:
    if name == FLAT:
        return SignalStats(0, 0, float("nan"), float("nan"), 0.0)
    ev = events[name]
    return ev.window(ev.out_of_sample(fold))


# --------------------------------------------------------------------------------------------------
# 3. the fast engine
# --------------------------------------------------------------------------------------------------

def config_table(rows: SymbolRows, schedule: list[tuple[int, int, PanelConfig | None]]) -> SymbolSignals:
    """The symbol's table with ``direction``/``score`` (and the live ``signal_at``) of the configuration in force at
    each row: ``schedule`` is ``(start_ms, end_ms, config or None = do not trade)``; rows outside it are FLAT."""
    t = rows.table.open_ms
    direction = np.zeros(len(t), dtype=np.int8)
    score = np.zeros(len(t))
    cache: dict[PanelConfig, tuple[np.ndarray, np.ndarray]] = {}
    for lo, hi, cfg in schedule:
        if cfg is None:
            continue
        if cfg not in cache:
            cache[cfg] = rows.panel(cfg)
        inside = (t >= lo) & (t < hi)
        direction[inside] = cache[cfg][0][inside]
        score[inside] = cache[cfg][1][inside]
    table = copy.copy(rows.table)
    table.direction, table.score = direction, score
    consensi = [(lo, hi, None if cfg is None else Consensus(build_voters(cfg.voters), threshold=cfg.threshold,
                                                            min_agree=cfg.min_agree)) for lo, hi, cfg in schedule]
    base = rows.table

    def signal_at(i: int) -> Signal | None:  # the live Consensus.decide of the configuration in force at row i
        features = base.features_at(i)
        if features is None:
            return None
        at = int(t[i])
        consensus = next((c for lo, hi, c in consensi if lo <= at < hi), None)
        signal = (consensus or base.consensus).decide(base.symbol, features)
        if consensus is None:
            signal = replace(signal, direction=Direction.FLAT)
        stop = features[base.config.stop]
        return replace(signal, atr=stop.atr) if stop.atr > 0 else signal

    table.signal_at = signal_at  # type: ignore[method-assign]
    return table


def check_table(table: SymbolSignals, sample: int = 40) -> None:
    """On a sample of the rows where the scheduled table is LONG or SHORT, its ``signal_at`` (what exit management
    reads) has the table's direction and score."""
    rows = np.flatnonzero(table.direction != 0)
    for i in rows[:: max(1, len(rows) // sample)]:
        signal = table.signal_at(int(i))
        same = signal is not None and int(signal.direction) == int(table.direction[i])
        if not same or abs(signal.score - table.score[i]) > 1e-9:
            raise SystemExit(f"{table.symbol} row {i}: signal_at {signal} differs from the table's direction "
                             f"{int(table.direction[i])} / score {table.score[i]}")


def engine_runs(out: Out, data_dir: Path, exchange_info: Path | None, data: Mapping[str, SymbolRows],
                symbols: list[str], settings: Settings, runs: dict[str, list[tuple[int, int, PanelConfig | None]]],
                folds: list[Fold]) -> None:
    start = datetime.fromtimestamp(folds[0].start_ms / 1000, UTC)
    end = datetime.fromtimestamp(folds[-1].end_ms / 1000, UTC)
    from app.backtest import run_fast_backtest
    from engine.backtest.metrics import compute_metrics

    closes = {}
    for s in symbols:
        t = data[s].table
        inside = (t.open_ms >= start.timestamp() * 1000) & (t.open_ms < end.timestamp() * 1000)
        closes[s] = (t.open_ms[inside] + FIVE_MIN_MS, np.asarray(data[s].table.price)[inside])
    rows = []
    per_fold: dict[str, list[float]] = {}
    bh = None
    for name, schedule in runs.items():
        tables = {s: config_table(data[s], schedule) for s in symbols}
        for table in tables.values():
            check_table(table)
        factory: Callable[..., Mapping[str, SymbolSignals]] = lambda *_a, tables=tables: tables  # noqa: E731
        c0, w0 = cpu(), time.perf_counter()
        result = run_fast_backtest(settings, data_dir, symbols, start, end, signals=factory,
                                   exchange_info=exchange_info, operator_reset_after=timedelta(days=1))
        m = compute_metrics(result, closes=closes)
        per_fold[name] = [float(sum(t.net_pnl for t in result.trades if fold.start_ms <= t.opened_at.timestamp()
                                    * 1000 < fold.end_ms)) for fold in folds]
        bh = m.buy_and_hold
        print(f"  engine {name}: cpu {cpu() - c0:.1f} s, wall {time.perf_counter() - w0:.1f} s", flush=True)
        rows.append([name, f"{m.trades:,}", f(m.net_pnl, 2, True), f(m.fees, 2), f(m.funding, 2, True),
                     f(m.profit_factor, 2), pct(m.win_rate / 100), f"{m.return_pct:+.1f} %",
                     f"{m.max_drawdown_pct:.1f} %", str(len(result.halts))])
    out.text(f"\n### Fast engine, {', '.join(symbols)}, {start:%Y-%m-%d} → {end:%Y-%m-%d} (exclusive), default "
             "settings, drawdown halts reset after 1 day\n")
    out.table(["panel", "trades", "net P&L (USDT)", "fees", "funding", "profit factor", "win rate", "return",
               "max drawdown", "drawdown halts"], rows)
    if bh is not None:
        out.text(f"Buy-and-hold of the same symbols (equal weights, no fees): {bh.return_pct:+.1f} %, max drawdown "
                 f"{bh.max_drawdown_pct:.1f} %.")
    out.text("\n### Fast engine: net P&L (USDT) of the trades opened in each fold\n")
    out.table(["panel", *(fo.name for fo in folds)],
              [[name, *(f(x, 1, True) for x in values)] for name, values in per_fold.items()])


# --------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description="Signal quality of each voter and panel configuration, the "
                                     "walk-forward choice of the default, and (--engine) their fast-engine P&L.")
    parser.add_argument("--data", type=Path, default=DATA, help="the data folder (default: %(default)s)")
    parser.add_argument("--symbols", default=SYMBOLS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--voters", default=",".join(VOTER_NAMES),
                        help="the voters whose panels form the grid (default: %(default)s)")
    parser.add_argument("--engine", action="store_true", help="also run the fast engine (minutes of CPU)")
    parser.add_argument("--engine-symbols", default=ENGINE_SYMBOLS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables there")
    args = parser.parse_args()
    settings = Settings(_env_file=None, trading_mode="paper")  # type: ignore[call-arg]
    voters = tuple(args.voters.split(","))
    symbols = args.symbols.split(",")
    configs = grid(voters)
    folds = quarter_folds(FIRST_FOLD, END)
    out = Out()
    c0 = cpu()
    scratch = tempfile.TemporaryDirectory()
    info = None if (args.data / "exchange_info.json").is_file() else merged_exchange_info(
        EXCHANGE_INFO, Path(scratch.name) / "exchange_info.json")
    market = HistoricalMarket(args.data, ManualClock(START), symbols, exchange_info=info)
    data = {s: load(market, s, voters, settings) for s in market.symbols}
    days = sum(int(d.table.valid.sum()) for d in data.values()) / ROWS_PER_DAY
    print(f"loaded {', '.join(data)}: {days:,.0f} symbol-days, cpu {cpu() - c0:.1f} s", flush=True)
    horizon = next(iter(data.values())).horizon
    out.text(f"Grid: {len(configs)} configurations; folds {', '.join(fo.name for fo in folds)}; label horizon "
             f"{horizon} candles.")
    config_rows = signal_quality(out, data, voters, configs, days)
    all_four = PanelConfig(voters, DEFAULT.threshold, 1)
    calibration_of(out, f"all voters at the default gates ({all_four.name})", config_rows[all_four.name])
    comparators = [DEFAULT] + [PanelConfig((v,), DEFAULT.threshold) for v in voters if (v,) != DEFAULT.voters]
    comparators.append(all_four)
    selections, nxt = walk_forward(out, config_rows, configs, folds, horizon, comparators)
    if nxt.chosen != FLAT:
        calibration_of(out, f"the choice for the next quarter ({nxt.chosen})", config_rows[nxt.chosen])
    print(f"signal quality and walk-forward: cpu {cpu() - c0:.1f} s", flush=True)
    if args.engine:
        by_name = {c.name: c for c in configs}
        runs = {c.name: [(folds[0].start_ms, folds[-1].end_ms, c)] for c in comparators}
        runs["walk-forward"] = [(s.fold.start_ms, s.fold.end_ms, by_name.get(s.chosen)) for s in selections]
        engine_symbols = [s for s in args.engine_symbols.split(",") if s in data]
        engine_runs(out, args.data, info, data, engine_symbols, settings, runs, folds)
    print(f"total cpu {cpu() - c0:.1f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(out.md) + "\n")


if __name__ == "__main__":
    main()
