"""The model's features: vectorised over a symbol's whole 5m history, causal, multi-timeframe.

Row t uses only candles ≤ t. Every indicator is computed per contiguous run of data, so none bridges a gap. Higher
timeframes (15m, 1h, 4h) are built from complete buckets of 5m candles and join the 5m rows by close time: a 1h value
becomes visible at the first 5m row whose close is at or after that hour's close, never before.

Families, per timeframe (column prefix ``<tf>_``): returns over several horizons; EMA slopes and alignment; RSI;
MACD; Bollinger width and %B; ATR and ATR %; ADX; stochastic; OBV slope and volume z-score; MFI; realised
volatility; candle shape. Cross-sectional, on the 5m rows: funding rate and its change, BTC context (1h trend and
volatility), breadth (share of the universe above its 1h EMA50).

Floats are fine here (analysis, not orders). Columns are float32 in the final matrix to keep a year of 6 symbols
within the VPS's memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

FIVE_MIN_MS = 300_000
TIMEFRAMES: dict[str, int] = {"5m": 1, "15m": 3, "1h": 12, "4h": 48}
RETURN_HORIZONS = (1, 3, 12, 48)


@dataclass(frozen=True, slots=True)
class FrameParams:
    ema_fast: int = 20
    ema_slow: int = 50
    ema_slope_lookback: int = 5
    rsi: int = 14
    atr: int = 14
    adx: int = 14
    bb: int = 20
    stoch: int = 14
    mfi: int = 14
    vol_window: int = 20
    timeframes: tuple[str, ...] = ("5m", "15m", "1h", "4h")


def run_ids(open_ms: np.ndarray, step_ms: int) -> np.ndarray:
    """0, 0, 0, 1, 1, ...: a new id after every gap."""
    return np.concatenate([[0], np.cumsum(np.diff(open_ms) != step_ms)]).astype(np.int64)


def resample(frame: pd.DataFrame, factor: int) -> pd.DataFrame:
    """Complete buckets of ``factor`` 5m candles (``open_time`` aligned on the bucket), nothing partial."""
    if factor == 1:
        return frame
    step = FIVE_MIN_MS * factor
    bucket = frame["open_time"].to_numpy() // step * step
    grouped = frame.groupby(bucket, sort=True)
    out = pd.DataFrame({
        "open_time": grouped["open_time"].first().index.to_numpy(np.int64),
        "open": grouped["open"].first().to_numpy(), "high": grouped["high"].max().to_numpy(),
        "low": grouped["low"].min().to_numpy(), "close": grouped["close"].last().to_numpy(),
        "volume": grouped["volume"].sum().to_numpy(), "count": grouped["open"].size().to_numpy()})
    return out[out["count"] == factor].drop(columns="count").reset_index(drop=True)


def _ema(x: pd.Series, span: int) -> pd.Series:
    return x.ewm(span=span, adjust=False, min_periods=span).mean()


def _wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1.0 / n, adjust=False, min_periods=n).mean()


def _segment_features(d: pd.DataFrame, p: FrameParams) -> pd.DataFrame:
    """Indicators of one contiguous run of candles of one timeframe."""
    o, h, lo, c, v = (d[k] for k in ("open", "high", "low", "close", "volume"))
    out: dict[str, pd.Series] = {}
    logc = np.log(c)
    for k in RETURN_HORIZONS:
        out[f"ret_{k}"] = logc.diff(k)
    prev_close = c.shift(1)
    tr = pd.concat([h - lo, (h - prev_close).abs(), (lo - prev_close).abs()], axis=1).max(axis=1)
    atr = _wilder(tr, p.atr)
    out["atr_pct"] = atr / c * 100.0
    ema_f, ema_s = _ema(c, p.ema_fast), _ema(c, p.ema_slow)
    out["ema_fast_slope"] = (ema_f - ema_f.shift(p.ema_slope_lookback)) / (p.ema_slope_lookback * atr)
    out["ema_slow_slope"] = (ema_s - ema_s.shift(p.ema_slope_lookback)) / (p.ema_slope_lookback * atr)
    out["ema_trend"] = (ema_f - ema_s) / atr
    out["ema_align"] = np.sign(c - ema_f) + np.sign(ema_f - ema_s)
    out["extension"] = (c - ema_f) / atr
    delta = c.diff()
    gain, loss = _wilder(delta.clip(lower=0), p.rsi), _wilder((-delta).clip(lower=0), p.rsi)
    out["rsi"] = 100.0 * gain / (gain + loss).replace(0.0, np.nan)
    macd = _ema(c, 12) - _ema(c, 26)
    signal = _ema(macd, 9)
    out["macd"] = macd / atr
    out["macd_hist"] = (macd - signal) / atr
    mean, std = c.rolling(p.bb).mean(), c.rolling(p.bb).std(ddof=0)
    out["bb_width"] = 4.0 * std / mean
    out["bb_pctb"] = (c - (mean - 2 * std)) / (4.0 * std).replace(0.0, np.nan)
    up, down = h.diff(), -lo.diff()
    plus_dm = pd.Series(np.where((up > down) & (up > 0), up, 0.0), index=d.index)
    minus_dm = pd.Series(np.where((down > up) & (down > 0), down, 0.0), index=d.index)
    plus_di = 100 * _wilder(plus_dm, p.adx) / atr
    minus_di = 100 * _wilder(minus_dm, p.adx) / atr
    dx = 100 * (plus_di - minus_di).abs() / (plus_di + minus_di).replace(0.0, np.nan)
    out["adx"] = _wilder(dx, p.adx)
    out["di_diff"] = plus_di - minus_di
    lowest, highest = lo.rolling(p.stoch).min(), h.rolling(p.stoch).max()
    k = 100 * (c - lowest) / (highest - lowest).replace(0.0, np.nan)
    out["stoch_k"] = k
    out["stoch_d"] = k.rolling(3).mean()
    obv = (np.sign(delta).fillna(0.0) * v).cumsum()
    out["obv_slope"] = (obv - obv.shift(p.vol_window)) / v.rolling(p.vol_window).sum().replace(0.0, np.nan)
    vmean, vstd = v.rolling(p.vol_window).mean(), v.rolling(p.vol_window).std(ddof=0)
    out["volume_z"] = (v - vmean) / vstd.replace(0.0, np.nan)
    typical = (h + lo + c) / 3.0
    flow = typical * v
    pos = flow.where(typical.diff() > 0, 0.0).rolling(p.mfi).sum()
    neg = flow.where(typical.diff() < 0, 0.0).rolling(p.mfi).sum()
    out["mfi"] = 100.0 * pos / (pos + neg).replace(0.0, np.nan)
    out["realised_vol"] = logc.diff().rolling(p.vol_window).std(ddof=0)
    rng = (h - lo).replace(0.0, np.nan)
    out["body"] = (c - o) / rng
    out["upper_wick"] = (h - np.maximum(o, c)) / rng
    out["lower_wick"] = (np.minimum(o, c) - lo) / rng
    frame = pd.DataFrame(out, index=d.index)
    frame["atr"] = atr
    frame["ema_slow"] = ema_s
    return frame


def timeframe_features(frame_5m: pd.DataFrame, tf: str, p: FrameParams) -> pd.DataFrame:
    """Indicators of ``tf`` indexed by the 5m close time at which each becomes visible (``visible_ms``)."""
    factor = TIMEFRAMES[tf]
    step = FIVE_MIN_MS * factor
    pieces = []
    for _, run in frame_5m.groupby(run_ids(frame_5m["open_time"].to_numpy(), FIVE_MIN_MS), sort=True):
        bars = resample(run.reset_index(drop=True), factor)
        if bars.empty:
            continue
        for _, seg in bars.groupby(run_ids(bars["open_time"].to_numpy(), step), sort=True):
            feats = _segment_features(seg.reset_index(drop=True), p)
            feats["visible_ms"] = seg["open_time"].to_numpy() + step   # the bucket's close
            pieces.append(feats)
    if not pieces:
        return pd.DataFrame(columns=["visible_ms"])
    return pd.concat(pieces, ignore_index=True)


def symbol_features(frame_5m: pd.DataFrame, p: FrameParams = FrameParams()) -> pd.DataFrame:
    """One row per 5m candle (index = its open time), columns ``<tf>_<feature>``; row t uses candles ≤ t only."""
    frame_5m = frame_5m.sort_values("open_time").reset_index(drop=True)
    close_ms = frame_5m["open_time"].to_numpy(np.int64) + FIVE_MIN_MS
    run = run_ids(frame_5m["open_time"].to_numpy(), FIVE_MIN_MS)
    columns: dict[str, np.ndarray] = {}
    for tf in p.timeframes:
        feats = timeframe_features(frame_5m, tf, p)
        if feats.empty:
            continue
        visible = feats["visible_ms"].to_numpy(np.int64)
        pos = np.searchsorted(visible, close_ms, side="right") - 1   # the latest value visible at this close
        # a value from before a gap must not leak past it: its 5m candle must be in the same run as the row
        ok = pos >= 0
        src_open = np.where(ok, visible[np.clip(pos, 0, None)] - FIVE_MIN_MS, 0)
        src_row = np.searchsorted(frame_5m["open_time"].to_numpy(), src_open)
        src_row = np.clip(src_row, 0, len(run) - 1)
        ok &= run[src_row] == run
        for name in feats.columns:
            if name == "visible_ms":
                continue
            values = feats[name].to_numpy(np.float64)[np.clip(pos, 0, None)]
            columns[f"{tf}_{name}"] = np.where(ok, values, np.nan)
    return pd.DataFrame(columns, index=pd.Index(frame_5m["open_time"].to_numpy(np.int64), name="open_time"))


def add_funding(features: pd.DataFrame, funding: pd.DataFrame) -> pd.DataFrame:
    """The last settled funding rate at each row and its change from the one before (0 before the first)."""
    times = funding["funding_time"].to_numpy(np.int64)
    rates = funding["funding_rate"].to_numpy(np.float64)
    close_ms = features.index.to_numpy(np.int64) + FIVE_MIN_MS
    pos = np.searchsorted(times, close_ms, side="right") - 1
    rate = np.where(pos >= 0, rates[np.clip(pos, 0, None)], np.nan)
    prev = np.where(pos >= 1, rates[np.clip(pos - 1, 0, None)], np.nan)
    out = features.copy()
    out["funding_rate"] = rate
    out["funding_change"] = rate - prev
    return out


def add_cross_section(per_symbol: Mapping[str, pd.DataFrame], btc: str = "BTCUSDT") -> dict[str, pd.DataFrame]:
    """BTC context and breadth on every symbol's rows (same 5m clock, aligned by open time)."""
    above = {s: (f["1h_ema_trend"] > 0).astype(float).where(f["1h_ema_trend"].notna()) for s, f in per_symbol.items()
             if "1h_ema_trend" in f}
    breadth = pd.concat(above, axis=1).mean(axis=1) if above else None
    context = per_symbol.get(btc)
    out = {}
    for symbol, f in per_symbol.items():
        g = f.copy()
        if context is not None:
            aligned = context.reindex(g.index)
            g["btc_trend"] = aligned.get("1h_ema_trend")
            g["btc_vol"] = aligned.get("1h_realised_vol")
        if breadth is not None:
            g["breadth"] = breadth.reindex(g.index)
        out[symbol] = g
    return out


def feature_names(frame: pd.DataFrame) -> list[str]:
    """The model's inputs: every column but the raw price levels kept for labelling."""
    return [c for c in frame.columns if not c.endswith(("_atr", "_ema_slow"))]


def build_features(candles: Mapping[str, pd.DataFrame], funding: Mapping[str, pd.DataFrame] | None = None,
                   p: FrameParams = FrameParams(), symbols: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Features of several symbols: per symbol, then funding, then the cross-section."""
    per_symbol = {}
    for symbol in symbols or sorted(candles):
        f = symbol_features(candles[symbol], p)
        if funding is not None and symbol in funding:
            f = add_funding(f, funding[symbol])
        per_symbol[symbol] = f
    return add_cross_section(per_symbol)
