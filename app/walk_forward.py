"""``python main.py backtest --walk-forward``: the fast engine with the ML voter retrained as the live bot would.

1. Every symbol's signal table is built once over its whole history with the feature columns kept (the live scan's
   exact features, ``strategies.signal_table``), with the triple-barrier labels of Vigil's own exit rule
   (``strategies.ml_dataset``).
2. The window ``[start, end)`` is cut into folds of ``retrain_days``. For each fold the ML voter is trained on the
   rows of the ``train_days`` before the fold whose label horizon ended before ``fold start − embargo`` (purge: no
   training label overlaps the fold; embargo = the label horizon again); ``TrainingWindow`` records what was used.
   That model predicts the fold's rows (and only them); its probabilities are recorded and the model is dropped
   (memory holds one model). A fold with too little history has no model: the panel runs without the ML voter there.
3. ONE continuous fast-engine run over the whole window: the panel at each row is the technical voters plus the ML
   voter of that row's fold (``strategies.scheduled_panel``). Trades, the account, the breakers and the adaptive
   state carry across fold boundaries; only the model changes, as in the live bot. Open trades are closed only at
   the window's end. Per-fold figures are slices of that run: the trades that opened in the fold, the equity at the
   fold's bounds.
4. Candidates, each scored on every valid 5m row of the window and run through the engine the same way: the panel
   (``consensus``), each voter alone (a panel of one: any non-FLAT vote trades), the panel without the ML voter, and
   the former default (``trend_momentum`` alone at 0.6). Signal quality against the triple-barrier outcome of the
   side voted: hit rate and Brier score on every vote row and on onsets only (a non-FLAT row whose contiguous
   previous row was not on the same side: the first row of a run), and a calibration table of every vote row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from app.backtest import fast_config
from app.runtime import build_consensus
from app.train import barrier_params
from core.clock import ManualClock, to_ms
from core.intervals import interval_ms
from engine.backtest.account import SymbolData
from engine.backtest.fast import run_engine
from engine.backtest.results import BacktestResult, iso
from engine.exchange.historical import HistoricalMarket
from engine.exchange.types import KlineBatch
from settings import Settings
from strategies.consensus import Consensus
from strategies.evaluation import CalibrationBin, SignalStats, calibration, concat_rows, vote_rows
from strategies.labels import BarrierParams, Labels
from strategies.ml import DAY_MS, SIDES, Dataset, fit_calibrated
from strategies.ml_dataset import assemble, table_labels, table_rows
from strategies.ml_voter import MLVoter, decide, matrix_from_columns
from strategies.panel import build_voters
from strategies.scheduled_panel import RecordedMLVoter, ScheduledConsensus
from strategies.signal_table import BASE_MS, SignalConfig, SymbolSignals, build_symbol_signals, with_signals

log = logging.getLogger(__name__)

ALONE_THRESHOLD = 1e-9  # a panel of one voter trades on any non-FLAT vote
CONSENSUS = "consensus"
ML = "ml"
WITHOUT_ML = "panel without ml"
#: the default before the walk-forward evaluation of the technical voters: ``trend_momentum`` alone at 0.6
FORMER_DEFAULT = ("trend_momentum", 0.6)
FORMER = "trend_momentum ≥0.6 (former default)"


@dataclass(frozen=True, slots=True)
class WalkForwardOptions:
    retrain_days: float = 7.0
    train_days: float = 90.0
    horizon_hours: float = 24.0
    stride: int = 12


@dataclass(frozen=True, slots=True)
class TrainingWindow:
    """What one fold's model was trained on (epoch ms). ``label_end_ms`` is when the last training row's label
    horizon closed; it is at most ``cutoff_ms = fold_start_ms − embargo``."""

    fold_start_ms: int
    fold_end_ms: int
    cutoff_ms: int
    first_row_ms: int
    last_row_ms: int
    label_end_ms: int
    rows: int


@dataclass(frozen=True, slots=True)
class FoldReport:
    """A slice of the continuous run: the trades that opened in ``[start, end)`` and their net P&L (closed later
    or not), and the account's equity at the fold's bounds (the last point before each)."""

    start: datetime
    end: datetime
    window: TrainingWindow | None   # None: too little history, the fold ran without the ML voter
    trades: int
    net_pnl: Decimal
    start_equity: Decimal
    end_equity: Decimal

    def to_json(self) -> dict[str, Any]:
        w = self.window
        return {"start": iso(self.start), "end": iso(self.end), "trades": self.trades, "net_pnl": str(self.net_pnl),
                "start_equity": str(self.start_equity), "end_equity": str(self.end_equity),
                "model": None if w is None else {
                    "train_first_row": _iso_ms(w.first_row_ms), "train_last_row": _iso_ms(w.last_row_ms),
                    "label_end": _iso_ms(w.label_end_ms), "cutoff": _iso_ms(w.cutoff_ms), "rows": w.rows}}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A voter, the panel or an ablation panel over the walk: its signal quality and the continuous engine run of
    acting on it. ``votes``: non-FLAT rows; ``rows``/``onsets``: the labelled ones (``SignalStats``)."""

    name: str
    votes: int
    rows: SignalStats
    onsets: SignalStats
    calibration: tuple[CalibrationBin, ...]
    run: BacktestResult

    @property
    def trades(self) -> int:
        return len(self.run.trades)

    @property
    def net_pnl(self) -> Decimal:
        return sum((t.net_pnl for t in self.run.trades), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        def stats(s: SignalStats) -> dict[str, Any]:
            return {"labelled": s.votes, "hits": s.hits, "hit_rate": _num(s.hit_rate), "brier": _num(s.brier),
                    "mean_net_r": _num(s.mean_r), "total_net_r": s.total_r}

        r = self.run
        return {"votes": self.votes, "labelled_votes": self.rows.votes, "hit_rate": _num(self.rows.hit_rate),
                "brier": _num(self.rows.brier), "rows": stats(self.rows), "onsets": stats(self.onsets),
                "calibration": [{"lo": b.lo, "hi": b.hi, "rows": b.count, "mean_confidence": _num(b.mean_confidence),
                                 "hit_rate": _num(b.hit_rate)} for b in self.calibration],
                "alone": {"trades": self.trades, "net_pnl": str(self.net_pnl),
                          "fees": str(sum((t.fees for t in r.trades), Decimal(0))),
                          "funding": str(sum((t.funding for t in r.trades), Decimal(0))),
                          "end_equity": str(r.end_equity)}}


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    result: BacktestResult             # the panel's continuous run
    folds: tuple[FoldReport, ...]
    candidates: dict[str, Candidate]   # CONSENSUS, each voter, WITHOUT_ML, FORMER (those that apply)
    voter_names: tuple[str, ...]       # the panel's voters, ML last when a fold had a model

    @property
    def voters(self) -> dict[str, Candidate]:
        """Each voter and the consensus (what the JSON's ``voters`` object carries)."""
        return {n: self.candidates[n] for n in (*self.voter_names, CONSENSUS) if n in self.candidates}

    @property
    def ablation(self) -> dict[str, Candidate]:
        return {n: c for n, c in self.candidates.items() if n not in self.voters}

    def voters_json(self) -> dict[str, Any]:
        return {name: c.to_json() for name, c in self.voters.items()}

    def ablation_json(self) -> dict[str, Any]:
        return {name: c.to_json() for name, c in self.ablation.items()}


def _num(x: float) -> float | None:
    return None if x != x else float(x)


def _iso_ms(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, tz=UTC))


def fold_bounds(start: datetime, end: datetime, retrain_days: float) -> list[tuple[datetime, datetime]]:
    step = timedelta(days=retrain_days)
    out, t = [], start
    while t < end:
        out.append((t, min(t + step, end)))
        t += step
    return out


def training_rows(data: Dataset, fold_start_ms: int, label: BarrierParams, train_days: float
                  ) -> tuple[np.ndarray, int]:
    """Indices of the rows a fold starting at ``fold_start_ms`` may train on, and the cutoff: the label of every
    row (its horizon ends ``(horizon + 1) × 5m`` after it opened) closed by ``fold start − embargo``, the embargo
    being the label horizon; only the ``train_days`` before the cutoff."""
    horizon_ms = label.horizon * BASE_MS
    cutoff = fold_start_ms - horizon_ms
    label_end = data.open_ms + horizon_ms + BASE_MS
    keep = (label_end <= cutoff) & (data.open_ms >= cutoff - int(train_days * DAY_MS))
    return np.flatnonzero(keep), cutoff


def train_fold(data: Dataset, rows: np.ndarray, timeframes: Sequence[str], threshold: float) -> MLVoter:
    estimators = {side: fit_calibrated(data.X[rows], data.y[side][rows]) for side in SIDES}
    return MLVoter(estimators, timeframes, threshold)


FoldProgress = Callable[[int, int, str], None]
#: called with each fold's index and model (tests and research keep one to compare with a plain backtest)
ModelSink = Callable[[int, MLVoter], None]


def warmup_ms(cfg: SignalConfig) -> int:
    """History before a row that its live features can depend on: ``history`` candles of the longest timeframe
    (the live windows are capped there), plus a day. Cutting the data earlier than this changes nothing."""
    return cfg.history * max(interval_ms(tf) for tf in cfg.timeframes) + DAY_MS


def _cut(market: HistoricalMarket, symbol: str, span: tuple[int, int]) -> tuple[KlineBatch, SymbolData]:
    """The symbol's candles inside ``span`` (epoch ms), as the signal table's batch and the engine's data, aligned
    row for row (the engine indexes the tables like its candles). Memory: only the walk's span is kept."""
    open_time, o, h, lo, c, f_time, f_rate = market.history(symbol)
    a, z = (int(x) for x in np.searchsorted(open_time, span))
    batch = market.base_klines(symbol).slice(a, z)
    return batch, SymbolData(symbol, open_time[a:z], o[a:z], h[a:z], lo[a:z], c[a:z], f_time, f_rate)


@dataclass(slots=True)
class _Symbol:
    """One symbol over the walk: its table, labels, every technical voter's arrays, the recorded ML probabilities
    and which rows a model covers; ``inside`` = valid rows in ``[start, end)``."""

    table: SymbolSignals
    labels: Labels
    inside: np.ndarray
    votes: dict[str, tuple[np.ndarray, np.ndarray]]
    p_long: np.ndarray
    p_short: np.ndarray
    covered: np.ndarray


def run_walk_forward_backtest(settings: Settings, data_dir: Path, symbols: list[str], start: datetime, end: datetime,
                              options: WalkForwardOptions = WalkForwardOptions(), *,
                              exchange_info: Path | None = None, operator_reset_after: timedelta | None = None,
                              progress: FoldProgress | None = None, model_sink: ModelSink | None = None
                              ) -> WalkForwardResult:
    market = HistoricalMarket(data_dir, ManualClock(start), symbols, exchange_info=exchange_info)
    chosen = market.symbols
    if not chosen:
        raise FileNotFoundError(f"none of {', '.join(symbols)} has data and rules in {data_dir}")
    settings = settings.model_copy(update={"symbols": chosen, "universe_size": len(chosen)})
    cfg = SignalConfig.from_settings(settings)
    label = barrier_params(settings, options.horizon_hours)
    technical = build_consensus(settings, ml=False)
    lo_ms = to_ms(start) - int(options.train_days * DAY_MS) - 2 * label.horizon * BASE_MS
    span = (lo_ms - warmup_ms(cfg), to_ms(end) + (label.horizon + 2) * BASE_MS)
    data: dict[str, SymbolData] = {}
    syms: dict[str, _Symbol] = {}
    parts = {}
    for k, symbol in enumerate(chosen):
        if progress is not None:
            progress(k, len(chosen), f"features {symbol}")
        batch, data[symbol] = _cut(market, symbol, span)
        table = build_symbol_signals(batch, technical, cfg, keep_features=True)
        if not np.array_equal(table.open_ms, data[symbol].open_time):
            raise ValueError(f"{symbol}: the signal table's candles differ from the market's; cannot align them")
        labels = table_labels(table, batch, label)
        inside = table.valid & (table.open_ms >= to_ms(start)) & (table.open_ms < to_ms(end))
        votes = {}
        for voter in technical.voters:
            d, c = voter.vote_arrays(table)  # type: ignore[attr-defined]
            d = np.where(inside, d, 0).astype(np.int8)
            votes[voter.name] = (d, np.where(d != 0, np.nan_to_num(c), 0.0))
        n = len(table)
        syms[symbol] = _Symbol(table, labels, inside, votes, np.full(n, np.nan), np.full(n, np.nan),
                               np.zeros(n, dtype=bool))
        parts[symbol] = table_rows(table, labels, options.stride, lo_ms, to_ms(end))
    dataset = assemble(parts, cfg.timeframes)
    del parts
    folds = fold_bounds(start, end, options.retrain_days)
    windows: list[TrainingWindow | None] = []
    for k, (f_start, f_end) in enumerate(folds):
        if progress is not None:
            progress(k, len(folds), f"fold {f_start:%Y-%m-%d}")
        rows, cutoff = training_rows(dataset, to_ms(f_start), label, options.train_days)
        voter: MLVoter | None = None
        try:
            voter = train_fold(dataset, rows, cfg.timeframes, settings.ml_threshold) if len(rows) else None
        except ValueError as exc:
            log.info("fold %s: no ML model (%s)", f_start.date(), exc)
        if voter is None:
            windows.append(None)
            continue
        first, last = int(dataset.open_ms[rows[0]]), int(dataset.open_ms[rows[-1]])
        windows.append(TrainingWindow(to_ms(f_start), to_ms(f_end), cutoff, first, last,
                                      last + label.horizon * BASE_MS + BASE_MS, len(rows)))
        _predict_fold(voter, syms, to_ms(f_start), to_ms(f_end))
        if model_sink is not None:
            model_sink(k, voter)
        del voter
    dataset = None  # type: ignore[assignment]  # the training rows are not needed any more
    candidates = _candidates(settings, technical, syms, any(w is not None for w in windows))
    runs: dict[str, Candidate] = {}
    for k, (name, (consensus, arrays)) in enumerate(candidates.items()):
        if progress is not None:
            progress(k, len(candidates), f"engine {name}")
        tables = {s: with_signals(syms[s].table, consensus, *arrays[s]) for s in chosen}
        run = run_engine(fast_config(settings, operator_reset_after=operator_reset_after), market.rules, data,
                         tables, chosen, start, end, close_at_end=True)
        runs[name] = _score(name, syms, arrays, run)
    if progress is not None:
        progress(len(candidates), len(candidates), "done")
    panel = runs[CONSENSUS].run
    reports = tuple(_fold_report(panel, f_start, f_end, w) for (f_start, f_end), w in zip(folds, windows, strict=True))
    names = tuple(v.name for v in technical.voters) + ((ML,) if ML in runs else ())
    return WalkForwardResult(panel, reports, runs, names)


def _predict_fold(voter: MLVoter, syms: Mapping[str, _Symbol], lo: int, hi: int) -> None:
    """The fold's model on the fold's valid rows of every symbol: probabilities recorded, rows marked covered."""
    for s in syms.values():
        a, z = (int(x) for x in np.searchsorted(s.table.open_ms, [lo, hi]))
        rows = a + np.flatnonzero(s.inside[a:z])
        if rows.size == 0:
            continue
        p_long, p_short = voter.probabilities(matrix_from_columns(s.table.columns_at(rows), voter.timeframes))
        s.p_long[rows], s.p_short[rows] = p_long, p_short
        s.covered[rows] = True


Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


def _candidates(settings: Settings, technical: Consensus, syms: Mapping[str, _Symbol], with_ml: bool
                ) -> dict[str, tuple[Consensus, Arrays]]:
    """Every candidate's panel (what ``signal_at`` decides with) and its ``(direction, score)`` rows per symbol,
    FLAT outside the window: the same rule, vectorised (``Consensus.combine_arrays``)."""
    open_ms = {s: x.table.open_ms for s, x in syms.items()}
    covered = {s: x.covered for s, x in syms.items()}
    recorded = RecordedMLVoter(open_ms, {s: x.p_long for s, x in syms.items()},
                               {s: x.p_short for s, x in syms.items()}, settings.ml_threshold, name=ML)
    ml_votes: Arrays = {}
    for s, x in syms.items():
        d, c = decide(x.p_long, x.p_short, settings.ml_threshold)
        d = np.where(x.covered & x.inside, d, 0).astype(np.int8)
        ml_votes[s] = (d, np.where(d != 0, c, 0.0))

    def arrays(panel: Consensus, covered_panel: Consensus | None = None) -> Arrays:
        out: Arrays = {}
        for s, x in syms.items():
            votes = {**x.votes, ML: ml_votes[s]}
            d, c = panel.combine_arrays([(v.name, *votes[v.name]) for v in panel.voters], len(x.table))
            if covered_panel is not None:
                d2, c2 = covered_panel.combine_arrays([(v.name, *votes[v.name]) for v in covered_panel.voters],
                                                      len(x.table))
                d, c = np.where(x.covered, d2, d), np.where(x.covered, c2, c)
            d = np.where(x.inside, d, 0).astype(np.int8)
            out[s] = (d, np.where(x.inside, c, 0.0))
        return out

    out: dict[str, tuple[Consensus, Arrays]] = {}
    gates = {"weights": technical.weights, "threshold": technical.threshold, "min_agree": technical.min_agree,
             "min_agreement": technical.min_agreement}
    if with_ml:
        full = Consensus([*technical.voters, recorded], **gates)
        out[CONSENSUS] = (ScheduledConsensus(full, technical, open_ms, covered), arrays(technical, full))
    else:
        out[CONSENSUS] = (technical, arrays(technical))
    for voter in technical.voters:
        alone = Consensus([voter], threshold=ALONE_THRESHOLD)
        out[voter.name] = (alone, arrays(alone))
    if with_ml:
        alone, nobody = Consensus([recorded], threshold=ALONE_THRESHOLD), Consensus([], threshold=ALONE_THRESHOLD)
        out[ML] = (ScheduledConsensus(alone, nobody, open_ms, covered), arrays(nobody, alone))
        out[WITHOUT_ML] = (technical, arrays(technical))
    name, threshold = FORMER_DEFAULT
    if any(v.name == name for v in technical.voters):
        voters = [v for v in technical.voters if v.name == name]
    else:
        voters = build_voters((name,))
        for x in syms.values():
            d, c = voters[0].vote_arrays(x.table)  # type: ignore[attr-defined]
            d = np.where(x.inside, d, 0).astype(np.int8)
            x.votes[name] = (d, np.where(d != 0, np.nan_to_num(c), 0.0))
    former = Consensus(voters, threshold=threshold)
    out[FORMER] = (former, arrays(former))
    return out


def _score(name: str, syms: Mapping[str, _Symbol], arrays: Arrays, run: BacktestResult) -> Candidate:
    parts = []
    votes = 0
    for s, x in syms.items():
        d, c = arrays[s]
        votes += int(np.count_nonzero(d))
        t = x.table.open_ms
        contiguous = np.concatenate(([False], (np.diff(t) == BASE_MS) & x.table.valid[1:] & x.table.valid[:-1]))
        lab = x.labels
        parts.append(vote_rows(t, d, c, contiguous, lab.long, lab.short, lab.long_outcome, lab.short_outcome))
    rows = concat_rows(parts)
    return Candidate(name, votes, rows.stats(), rows.stats(onsets_only=True),
                     tuple(calibration(rows.confidence, rows.hit)), run)


def _fold_report(run: BacktestResult, start: datetime, end: datetime, window: TrainingWindow | None) -> FoldReport:
    trades = [t for t in run.trades if start <= t.opened_at < end]

    def equity_before(t: datetime) -> Decimal:
        k = int(np.searchsorted(run.equity_ms, to_ms(t))) - 1
        return run.start_equity if k < 0 else Decimal(repr(float(run.equity[k])))

    end_equity = run.end_equity if end >= run.end else equity_before(end)
    return FoldReport(start, end, window, len(trades), sum((t.net_pnl for t in trades), Decimal(0)),
                      equity_before(start), end_equity)
