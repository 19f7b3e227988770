"""strategies.features: indicators against hand-computed values and a pandas reference on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategies.features import (
    FEATURE_NAMES,
    FeatureParams,
    InsufficientData,
    _ewm,
    adx,
    atr,
    compute_features,
    compute_features_many,
    ema,
    ewm_reference,
    macd,
    rsi,
    true_range,
    wilder,
    zscore_last,
)
from tests.helpers_market import make_batch, sample_klines, window

# ---- hand-computed values on tiny series ---------------------------------------------------------------

def test_ema_by_hand():
    # alpha = 2 / (3 + 1) = 0.5, seeded with the first value
    np.testing.assert_allclose(ema(np.array([1.0, 2, 3, 4, 5]), 3), [1, 1.5, 2.25, 3.125, 4.0625])


def test_wilder_by_hand():
    # seed = mean(1, 2, 3) = 2, then y = (2 * y_prev + x) / 3
    got = wilder(np.array([1.0, 2, 3, 4, 5, 6]), 3)
    assert np.isnan(got[:2]).all()
    np.testing.assert_allclose(got[2:], [2, 8 / 3, 31 / 9, 116 / 27])


def test_rsi_by_hand():
    # changes +1, -0.5, +1, +0.5, -1
    got = rsi(np.array([10.0, 11, 10.5, 11.5, 12, 11]), 3)
    assert np.isnan(got[:3]).all()
    # avg gain 2/3, avg loss 1/6 -> RS 4; then 11/18 vs 1/9 -> RS 5.5; then 11/27 vs 11/27 -> RS 1
    np.testing.assert_allclose(got[3:], [80.0, 100 - 100 / 6.5, 50.0])


def test_rsi_edge_cases():
    assert rsi(np.arange(1.0, 20.0), 14)[-1] == 100.0  # only gains
    assert rsi(np.full(20, 5.0), 14)[-1] == 50.0  # no movement


def test_true_range_and_atr_by_hand():
    high = np.array([10.0, 12, 11, 13, 12])
    low = np.array([9.0, 10, 9, 11, 10])
    close = np.array([9.5, 11, 10, 12, 11])
    tr = true_range(high, low, close)
    # TR1 = max(12, 9.5) - min(10, 9.5) = 2.5; TR2 = 11 - 9 = 2; TR3 = 13 - 10 = 3; TR4 = 12 - 10 = 2
    np.testing.assert_allclose(tr[1:], [2.5, 2, 3, 2])
    got = atr(high, low, close, 2)
    # seed mean(2.5, 2) = 2.25 at index 2; then (2.25 + 3) / 2 = 2.625; then (2.625 + 2) / 2 = 2.3125
    np.testing.assert_allclose(got[2:], [2.25, 2.625, 2.3125])
    assert np.isnan(got[:2]).all()


def test_adx_by_hand():
    high = np.array([10.0, 11, 12, 11.5, 13])
    low = np.array([9.0, 9.5, 10.5, 10, 11])
    close = np.array([9.5, 10.5, 11.5, 10.5, 12.5])
    # +DM: 1, 1, 0, 1.5   -DM: 0, 0, 0.5, 0   TR: 1.5, 1.5, 1.5, 2.5   (period 2)
    # smoothed idx1: +DM 1, -DM 0, TR 1.5 -> DX 100; idx2: 0.5, 0.25, 1.5 -> DI 33.3/16.7 -> DX 33.3
    # ADX at idx2 = mean(100, 33.3) = 66.67; idx3: +DM 1.0, -DM 0.125, TR 2.0 -> DX 77.78 -> ADX 72.22
    got = adx(high, low, close, 2)
    assert np.isnan(got[:3]).all()
    np.testing.assert_allclose(got[3:], [200 / 3, (200 / 3 + 700 / 9) / 2])


def test_macd_is_difference_of_emas():
    x = np.linspace(1, 2, 60) ** 2
    line, sig, hist = macd(x, 12, 26, 9)
    np.testing.assert_allclose(line, ema(x, 12) - ema(x, 26))
    np.testing.assert_allclose(sig, ema(line, 9))
    np.testing.assert_allclose(hist, line - sig)


def test_zscore_last():
    assert zscore_last(np.array([1.0, 2, 3, 4, 5, 13]), 5) == pytest.approx((13 - 3) / np.std([1, 2, 3, 4, 5]))
    assert zscore_last(np.array([2.0, 2, 2, 2]), 10) == 0.0


# ---- the closed-form recursion -----------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.01, 2 / 21, 1 / 14, 0.5, 0.9, 0.99])
def test_closed_form_matches_the_plain_recursion_across_blocks(alpha: float):
    rng = np.random.default_rng(1)
    x = 50_000 + np.cumsum(rng.normal(0, 50, 4000))
    got = _ewm(x.reshape(1, -1), (alpha,), np.array([[x[0]]]))[0]
    np.testing.assert_allclose(got, ewm_reference(x, alpha, x[0]), rtol=1e-12)


def test_closed_form_filters_rows_independently():
    rng = np.random.default_rng(2)
    x = rng.normal(100, 5, (3, 500))
    alphas = (0.1, 0.3, 0.05)
    got = _ewm(x, alphas, x[:, :1])
    for r in range(3):
        np.testing.assert_allclose(got[r], ewm_reference(x[r], alphas[r], x[r, 0]), rtol=1e-12)


# ---- pandas reference on real candles ---------------------------------------------------------------------

def _pd_wilder(s: pd.Series, n: int) -> pd.Series:
    """Wilder smoothing the textbook way: SMA of the first n values, then ewm(alpha=1/n, adjust=False)."""
    s = s.dropna()
    seeded = pd.concat([pd.Series([s.iloc[:n].mean()], index=[s.index[n - 1]]), s.iloc[n:]])
    return seeded.ewm(alpha=1 / n, adjust=False).mean()


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    b = window(sample_klines("SOLUSDT", "15m"), 1_740_000_000_000, 1000)
    return pd.DataFrame({"high": b.high, "low": b.low, "close": b.close})


def test_ema_matches_pandas(real: pd.DataFrame):
    for n in (12, 20, 50, 200):
        ref = real["close"].ewm(span=n, adjust=False).mean()
        np.testing.assert_allclose(ema(real["close"].to_numpy(), n), ref.to_numpy(), rtol=1e-12)


def test_rsi_matches_pandas(real: pd.DataFrame):
    d = real["close"].diff()
    gain = _pd_wilder(d.clip(lower=0), 14)
    loss = _pd_wilder((-d).clip(lower=0), 14)
    ref = (100 - 100 / (1 + gain / loss)).reindex(real.index)
    np.testing.assert_allclose(rsi(real["close"].to_numpy(), 14), ref.to_numpy(), rtol=1e-10, equal_nan=True)


def test_atr_matches_pandas(real: pd.DataFrame):
    prev = real["close"].shift()
    tr = pd.concat([real["high"] - real["low"], (real["high"] - prev).abs(), (real["low"] - prev).abs()],
                   axis=1).max(axis=1).where(prev.notna())
    ref = _pd_wilder(tr, 14).reindex(real.index)
    got = atr(real["high"].to_numpy(), real["low"].to_numpy(), real["close"].to_numpy(), 14)
    np.testing.assert_allclose(got, ref.to_numpy(), rtol=1e-10, equal_nan=True)


def test_adx_matches_pandas(real: pd.DataFrame):
    h, lo, c = real["high"], real["low"], real["close"]
    up, down = h.diff(), -lo.diff()
    pdm = up.where((up > down) & (up > 0), 0.0).where(up.notna())
    mdm = down.where((down > up) & (down > 0), 0.0).where(down.notna())
    prev = c.shift()
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1).where(prev.notna())
    atr_s = _pd_wilder(tr, 14)
    pdi = 100 * _pd_wilder(pdm, 14) / atr_s
    mdi = 100 * _pd_wilder(mdm, 14) / atr_s
    dx = 100 * (pdi - mdi).abs() / (pdi + mdi)
    ref = _pd_wilder(dx, 14).reindex(real.index)
    got = adx(h.to_numpy(), lo.to_numpy(), c.to_numpy(), 14)
    np.testing.assert_allclose(got, ref.to_numpy(), rtol=1e-9, equal_nan=True)


# ---- compute_features --------------------------------------------------------------------------------------

def _frames(symbol: str = "BTCUSDT", end_ms: int = 1_743_000_000_000, size: int = 300) -> dict:
    return {tf: window(sample_klines(symbol, tf), end_ms, size) for tf in ("4h", "5m", "1h", "15m")}


def test_features_agree_with_the_one_series_indicators():
    frames = _frames()
    f = compute_features(frames)
    assert f.symbol == "BTCUSDT"
    assert f.timeframes == ("5m", "15m", "1h", "4h")
    assert f.entry.interval == "5m"
    for tf, b in frames.items():
        t = f[tf]
        assert t.close == b.close[-1] and t.open_time == b.open_time[-1] and t.candles == 300
        assert t.ema_fast == pytest.approx(ema(b.close, 20)[-1], rel=1e-12)
        assert t.ema_slow == pytest.approx(ema(b.close, 50)[-1], rel=1e-12)
        assert t.rsi == pytest.approx(rsi(b.close, 14)[-1], rel=1e-10)
        a = atr(b.high, b.low, b.close, 14)[-1]
        assert t.atr == pytest.approx(a, rel=1e-10)
        assert t.atr_pct == pytest.approx(a / b.close[-1] * 100, rel=1e-10)
        assert t.adx == pytest.approx(adx(b.high, b.low, b.close, 14)[-1], rel=1e-9)
        hist = macd(b.close)[2]
        assert t.macd_hist == pytest.approx(hist[-1], rel=1e-9, abs=1e-9)
        assert t.macd_hist_prev == pytest.approx(hist[-2], rel=1e-9, abs=1e-9)
        e = ema(b.close, 20)
        assert t.ema_fast_slope == pytest.approx((e[-1] - e[-4]) / 3 / a, rel=1e-9)
        assert t.trend == pytest.approx((e[-1] - ema(b.close, 50)[-1]) / a, rel=1e-9)
        assert t.ret_1 == pytest.approx(b.close[-1] / b.close[-2] - 1)
        assert t.volatility == pytest.approx(np.diff(np.log(b.close[-51:])).std())
        assert np.isfinite(list(t.as_dict().values())).all()
    assert set(f.as_dict()) == {f"{tf}_{n}" for tf in f.timeframes for n in FEATURE_NAMES}


def test_features_of_unequal_lengths_equal_those_computed_alone():
    frames = _frames()
    frames["1h"] = frames["1h"].slice(100)  # 200 candles: computed in its own stack
    together = compute_features(frames)
    for tf, b in frames.items():
        assert together[tf] == compute_features({tf: b})[tf]


def test_symbols_stacked_together_equal_each_computed_alone():
    """The scan stacks every symbol's series in one computation: not a single bit may differ (decisions
    compare these values against thresholds), and the volume z-score keeps its zero-deviation rule."""
    frames = {s: _frames(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
    flat = frames["ETHUSDT"]["15m"]
    volume = flat.volume.copy()
    volume[-60:-1] = 5.0  # no deviation in the z-score window: z is 0, not inf
    frames["ETHUSDT"]["15m"] = type(flat)(flat.symbol, flat.interval, flat.open_time, flat.open, flat.high,
                                          flat.low, flat.close, volume)
    frames["SOLUSDT"]["1h"] = frames["SOLUSDT"]["1h"].slice(50)  # another length: another stack
    frames["XRPUSDT"] = {"5m": make_batch("XRPUSDT", n=59)}
    together, skipped = compute_features_many(frames)
    assert list(together) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert set(skipped) == {"XRPUSDT"} and isinstance(skipped["XRPUSDT"], InsufficientData)
    for symbol in together:
        alone = compute_features(frames[symbol])
        assert together[symbol] == alone
        for tf in alone.timeframes:
            assert alone[tf].volume_z == zscore_last(frames[symbol][tf].volume, 50)
    assert together["ETHUSDT"]["15m"].volume_z == 0.0


def test_too_few_candles_is_an_error():
    with pytest.raises(InsufficientData):
        compute_features({"5m": make_batch(n=59)})
    assert compute_features({"5m": make_batch(n=60)}).entry.candles == 60


def test_mixed_symbols_are_refused():
    with pytest.raises(ValueError):
        compute_features({"5m": make_batch("AUSDT"), "15m": make_batch("BUSDT", "15m")})
    with pytest.raises(ValueError):
        compute_features({})


def test_params_are_checked():
    with pytest.raises(ValueError):
        FeatureParams(ema_fast=1)
