"""``python main.py backtest --walk-forward``: the fast engine with the ML voter retrained as the live bot would.

1. Every symbol's signal table is built once over its whole history with the feature columns kept (the live scan's
   exact features, ``strategies.signal_table``), with the triple-barrier labels of Vigil's own exit rule
   (``strategies.ml_dataset``).
2. The window ``[start, end)`` is cut into folds of ``retrain_days``. For each fold, one at a time:
   - the ML voter is trained on the rows of the ``train_days`` before the fold whose label horizon ended before
     ``fold start − embargo`` (purge: no training label overlaps the fold; embargo = the label horizon again).
     ``TrainingWindow`` records what was used; a fold with too little history runs without the ML voter;
   - the fold's signals are the technical panel plus that model (``signal_table.with_consensus``: no feature is
     recomputed), and the fast engine runs the fold, starting from the previous fold's end equity;
   - every voter (and the consensus) is scored on each valid 5m row of the fold: ``votes`` (non-FLAT), hit rate and
     Brier score of its confidence against the triple-barrier outcome of the side it voted, and the P&L of a fast
     engine run acting on that voter alone (a panel of one, any non-FLAT vote trades);
   - the model is dropped before the next fold (memory holds one fold's model).
3. Simplifications, said plainly: trades still open at a fold's end are closed there (``end_of_data``), and the
   engine's breakers and adaptive memory start afresh each fold; only the equity carries over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from strategies.labels import BarrierParams, Labels
from strategies.ml import DAY_MS, SIDES, Dataset, fit_calibrated
from strategies.ml_dataset import assemble, table_labels, table_rows
from strategies.ml_voter import MLVoter
from strategies.signal_table import BASE_MS, SignalConfig, SymbolSignals, build_symbol_signals, with_consensus

log = logging.getLogger(__name__)

ALONE_THRESHOLD = 1e-9  # a panel of one voter trades on any non-FLAT vote
CONSENSUS = "consensus"


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


@dataclass(slots=True)
class VoterScore:
    """One voter over the walk: non-FLAT votes, those with a resolved label, their hits and summed squared error,
    and the P&L of acting on it alone."""

    votes: int = 0
    labelled: int = 0
    hits: int = 0
    brier_sum: float = 0.0
    trades: int = 0
    net_pnl: Decimal = Decimal(0)
    end_equity: Decimal | None = None

    def add(self, direction: np.ndarray, confidence: np.ndarray, labels: Labels) -> None:
        voted = direction != 0
        self.votes += int(voted.sum())
        y = np.where(direction > 0, labels.long, labels.short)
        scored = voted & ~np.isnan(y)
        self.labelled += int(scored.sum())
        self.hits += int((y[scored] == 1.0).sum())
        self.brier_sum += float(((confidence[scored] - y[scored]) ** 2).sum())

    def to_json(self) -> dict[str, Any]:
        return {"votes": self.votes, "labelled_votes": self.labelled,
                "hit_rate": self.hits / self.labelled if self.labelled else None,
                "brier": self.brier_sum / self.labelled if self.labelled else None,
                "alone": {"trades": self.trades, "net_pnl": str(self.net_pnl)}}


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    result: BacktestResult             # the folds stitched together
    folds: tuple[FoldReport, ...]
    voters: dict[str, VoterScore] = field(default_factory=dict)

    def voters_json(self) -> dict[str, Any]:
        return {name: score.to_json() for name, score in self.voters.items()}


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
    return MLVoter(estimators, timeframes, threshold, remember=True)


def _stitch(parts: Sequence[BacktestResult], start: datetime, end: datetime, symbols: tuple[str, ...],
            start_equity: Decimal) -> BacktestResult:
    if not parts:
        return BacktestResult(strategy="default", engine="fast", symbols=symbols, start=start, end=end,
                              start_equity=start_equity, end_equity=start_equity, trades=(),
                              equity_ms=np.zeros(0, np.int64), equity=np.zeros(0), candles=0)
    return BacktestResult(
        strategy="default+ml", engine="fast", symbols=symbols, start=start, end=end,
        start_equity=parts[0].start_equity, end_equity=parts[-1].end_equity,
        trades=tuple(t for p in parts for t in p.trades),
        equity_ms=np.concatenate([p.equity_ms for p in parts]), equity=np.concatenate([p.equity for p in parts]),
        candles=sum(p.candles for p in parts), open_at_end=sum(p.open_at_end for p in parts),
        halts=tuple(h for p in parts for h in p.halts), wall_seconds=sum(p.wall_seconds for p in parts))


FoldProgress = Callable[[int, int, str], None]


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


def run_walk_forward_backtest(settings: Settings, data_dir: Path, symbols: list[str], start: datetime, end: datetime,
                              options: WalkForwardOptions = WalkForwardOptions(), *,
                              exchange_info: Path | None = None, operator_reset_after: timedelta | None = None,
                              progress: FoldProgress | None = None) -> WalkForwardResult:
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
    tables: dict[str, SymbolSignals] = {}
    labels: dict[str, Labels] = {}
    parts = {}
    for k, symbol in enumerate(chosen):
        if progress is not None:
            progress(k, len(chosen), f"features {symbol}")
        batch, data[symbol] = _cut(market, symbol, span)
        table = build_symbol_signals(batch, technical, cfg, keep_features=True)
        if not np.array_equal(table.open_ms, data[symbol].open_time):
            raise ValueError(f"{symbol}: the signal table's candles differ from the market's; cannot align them")
        tables[symbol], labels[symbol] = table, table_labels(table, batch, label)
        parts[symbol] = table_rows(table, labels[symbol], options.stride, lo_ms, to_ms(end))
    dataset = assemble(parts, cfg.timeframes)
    del parts
    folds = fold_bounds(start, end, options.retrain_days)
    balance = settings.paper_start_balance
    alone_balance: dict[str, Decimal] = {}
    reports: list[FoldReport] = []
    results: list[BacktestResult] = []
    scores: dict[str, VoterScore] = {}
    for k, (f_start, f_end) in enumerate(folds):
        if progress is not None:
            progress(k, len(folds), f"fold {f_start:%Y-%m-%d}")
        rows, cutoff = training_rows(dataset, to_ms(f_start), label, options.train_days)
        voter: MLVoter | None = None
        window = None
        try:
            voter = train_fold(dataset, rows, cfg.timeframes, settings.ml_threshold) if len(rows) else None
        except ValueError as exc:
            log.info("fold %s: no ML model (%s)", f_start.date(), exc)
        if voter is not None:
            first, last = int(dataset.open_ms[rows[0]]), int(dataset.open_ms[rows[-1]])
            window = TrainingWindow(to_ms(f_start), to_ms(f_end), cutoff, first, last,
                                    last + label.horizon * BASE_MS + BASE_MS, len(rows))
        panel = Consensus([*technical.voters, *([voter] if voter is not None else [])], technical.weights,
                          technical.threshold)
        fold_settings = settings.model_copy(update={"paper_start_balance": balance})
        result = _run_fold(fold_settings, market, data, tables, panel, chosen, f_start, f_end, operator_reset_after)
        results.append(result)
        reports.append(FoldReport(f_start, f_end, window, len(result.trades),
                                  result.end_equity - result.start_equity, result.start_equity, result.end_equity))
        balance = result.end_equity
        _score_fold(scores, tables, labels, panel, f_start, f_end)
        for v in panel.voters:
            score = scores[v.name]
            alone = Consensus([v], threshold=ALONE_THRESHOLD)
            alone_settings = settings.model_copy(
                update={"paper_start_balance": alone_balance.get(v.name, settings.paper_start_balance)})
            r = _run_fold(alone_settings, market, data, tables, alone, chosen, f_start, f_end, operator_reset_after)
            score.trades += len(r.trades)
            score.net_pnl += r.end_equity - r.start_equity
            alone_balance[v.name] = r.end_equity
        c = scores[CONSENSUS]
        c.trades, c.net_pnl = c.trades + len(result.trades), c.net_pnl + (result.end_equity - result.start_equity)
        del voter, panel
    if progress is not None:
        progress(len(folds), len(folds), "done")
    stitched = _stitch(results, start, end, tuple(chosen), settings.paper_start_balance)
    return WalkForwardResult(stitched, tuple(reports), scores)


def _run_fold(settings: Settings, market: HistoricalMarket, data: Mapping[str, SymbolData],
              tables: Mapping[str, SymbolSignals], panel: Consensus, chosen: list[str], start: datetime,
              end: datetime, operator_reset_after: timedelta | None) -> BacktestResult:
    lo, hi = to_ms(start), to_ms(end)
    fold_tables = {s: with_consensus(t, panel, lo, hi) for s, t in tables.items()}
    return run_engine(fast_config(settings, operator_reset_after=operator_reset_after), market.rules, data,
                      fold_tables, chosen, start, end, close_at_end=True)


def _score_fold(scores: dict[str, VoterScore], tables: Mapping[str, SymbolSignals], labels: Mapping[str, Labels],
                panel: Consensus, start: datetime, end: datetime) -> None:
    """Every voter's and the consensus' votes on each valid 5m row of the fold, against the labels."""
    lo, hi = to_ms(start), to_ms(end)
    for symbol, table in tables.items():
        a, z = (int(x) for x in np.searchsorted(table.open_ms, [lo, hi]))
        rows = a + np.flatnonzero(table.valid[a:z])
        if rows.size == 0:
            continue
        columns = table.columns_at(rows)
        lab = labels[symbol]
        fold_labels = Labels(*(x[rows] for x in (lab.long, lab.short, lab.long_outcome, lab.short_outcome)))
        votes = []
        for voter in panel.voters:
            direction, confidence = voter.vote_arrays(columns)  # type: ignore[attr-defined]
            scores.setdefault(voter.name, VoterScore()).add(direction, confidence, fold_labels)
            votes.append((voter.name, direction, confidence))
        direction, score = panel.combine_arrays(votes, rows.size)
        scores.setdefault(CONSENSUS, VoterScore()).add(direction, score, fold_labels)
