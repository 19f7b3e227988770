"""The outcome of one live vote on hand-built price paths (take-profit first, stop first, both in one candle, neither
within the horizon, still open, a hole in the data, price gaps through a barrier), Vigil's stop clamps, and its
equality with the triple-barrier labels on real candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategies.features import atr
from strategies.labels import BarrierParams, segment_ends, triple_barrier
from strategies.outcomes import Outcome, resolve_vote
from tests.trading_fixtures import SAMPLE

P = BarrierParams(horizon=4, stop_mult=1.0, tp_mult=2.0, min_stop_pct=0.01, max_stop_pct=50, min_reward_risk=1.0,
                  cost_pct=0.0)
T0 = 1_700_000_000_000 // 300_000 * 300_000   # the entry candle's open time
STEP = 300_000


def after(highs: list[float], lows: list[float], closes: list[float] | None = None, *, start: int = 1,
          skip: int | None = None) -> tuple[np.ndarray, ...]:
    """Candles opening ``start`` steps after the entry candle, one step apart (``skip``: that index is missing)."""
    closes = closes if closes is not None else [(h + lo) / 2 for h, lo in zip(highs, lows, strict=True)]
    times = [T0 + STEP * (start + i) for i in range(len(highs))]
    keep = [i for i in range(len(highs)) if i != skip]
    return (np.array([times[i] for i in keep]), np.array([highs[i] for i in keep], dtype=float),
            np.array([lows[i] for i in keep], dtype=float), np.array([closes[i] for i in keep], dtype=float))


def resolve(direction: int, candles: tuple[np.ndarray, ...], p: BarrierParams = P, stop_atr: float = 1.0):
    return resolve_vote(direction, 100.0, stop_atr, T0, *candles, p)


def test_take_profit_first_is_a_win_for_that_side_only():
    # entry 100, ATR 1: long stop 99 / TP 102; short stop 101 / TP 98
    candles = after([100.6, 101.5, 102.3, 101], [100.1, 100.4, 101.2, 100.2])
    long = resolve(1, candles)
    assert long.outcome is Outcome.TP and long.won and long.r == pytest.approx(2.0) and long.candles == 3
    short = resolve(-1, candles)
    assert short.outcome is Outcome.SL and not short.won and short.r == pytest.approx(-1.0) and short.candles == 2


def test_stop_first_is_a_loss_even_if_the_take_profit_comes_later():
    res = resolve(1, after([100.2, 99.6, 103, 103], [99.7, 98.9, 99.5, 102]))
    assert res.outcome is Outcome.SL and not res.won and res.candles == 2


def test_both_barriers_inside_one_candle_count_as_the_stop():
    res = resolve(1, after([102.5, 100], [98.5, 100]))
    assert res.outcome is Outcome.SL and res.r == pytest.approx(-1.0)


def test_neither_within_the_horizon_times_out_at_the_horizon_close():
    candles = after([100.9, 100.9, 100.9, 100.9, 105], [99.2, 99.2, 99.2, 99.2, 99.2],
                    closes=[100.5, 100.2, 100.8, 100.6, 104])
    res = resolve(1, candles)  # the 5th candle (TP) is past the 4-candle horizon
    assert res.outcome is Outcome.TIMEOUT and not res.won and res.r == pytest.approx(0.6) and res.candles == 4
    assert resolve(-1, candles).r == pytest.approx(-0.6)


def test_fewer_candles_than_the_horizon_and_no_barrier_is_still_open():
    res = resolve(1, after([100.5, 100.7], [99.5, 99.6]))
    assert res.outcome is None and not res.decided and res.candles == 2
    assert resolve(1, after([], [])).outcome is None


def test_a_hole_in_the_candles_voids_an_undecided_vote_but_not_a_decided_one():
    undecided = after([100.5, 100.7, 100.6, 100.4], [99.5, 99.6, 99.5, 99.5], skip=1)
    assert resolve(1, undecided).outcome is Outcome.VOID
    decided_before = after([102.5, 100.7, 100.6, 100.4], [100.1, 99.6, 99.5, 99.5], skip=1)
    assert resolve(1, decided_before).outcome is Outcome.TP
    assert resolve(1, after([100.5], [99.5], start=2)).outcome is Outcome.VOID   # the first candle is missing


def test_price_gaps_through_a_barrier():
    # the candle opens below the stop and never comes back: stopped (at worst the gap, counted as -1 R here)
    down = resolve(1, after([100.2, 97.5, 97], [99.8, 96.0, 95]))
    assert down.outcome is Outcome.SL and down.candles == 2
    # it opens above the take-profit: the long wins, the short is stopped
    up = after([100.2, 104.0], [99.9, 103.1])
    assert resolve(1, up).outcome is Outcome.TP and resolve(-1, up).outcome is Outcome.SL


def test_candles_up_to_the_entry_are_ignored():
    times, hi, lo, c = after([99.0, 100.5, 102.5], [97.0, 99.5, 101], start=0)  # the entry candle itself hit 97
    res = resolve_vote(1, 100.0, 1.0, T0, times, hi, lo, c, P)
    assert res.outcome is Outcome.TP and res.candles == 2


def test_vigils_stop_clamps_and_costs_apply():
    clamped = BarrierParams(horizon=4, stop_mult=2.0, tp_mult=3.0, min_stop_pct=0.5, max_stop_pct=5.0,
                            min_reward_risk=1.5, cost_pct=0.14)
    # ATR 0.01 → 2 × ATR = 0.02 is below the 0.5 % floor: the stop is 0.5 away, the take-profit 0.75 (1.5 R)
    res = resolve_vote(1, 100.0, 0.01, T0, *after([100.3, 100.8], [99.8, 100.2]), clamped)
    assert res.outcome is Outcome.TP and res.r == pytest.approx((0.75 - 0.14) / 0.5)
    assert resolve_vote(1, 100.0, 0.01, T0, *after([100.3, 100.4], [99.4, 99.6]), clamped).outcome is Outcome.SL
    assert resolve_vote(1, 100.0, float("nan"), T0, *after([101], [99]), clamped).outcome is Outcome.VOID
    with pytest.raises(ValueError, match="LONG"):
        resolve_vote(0, 100.0, 1.0, T0, *after([101], [99]), P)


def test_equals_the_triple_barrier_label_on_real_candles():
    d = pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz").drop_duplicates("open_time").reset_index(drop=True)
    d = d.iloc[:6000]
    o, h, lo, c = (d[k].to_numpy() for k in ("open_time", "high", "low", "close"))
    a = atr(h, lo, c)
    p = BarrierParams(horizon=48)
    labels = triple_barrier(h, lo, c, a, p, segment_end=segment_ends(o, STEP))
    checked = 0
    for t in range(20, len(d) - p.horizon, 37):
        for side, label in ((1, labels.long[t]), (-1, labels.short[t])):
            res = resolve_vote(side, float(c[t]), float(a[t]), int(o[t]), o[t + 1:], h[t + 1:], lo[t + 1:],
                               c[t + 1:], p)
            if np.isnan(label):   # the horizon crosses a hole: no label (the vote may still be decided before it)
                continue
            assert res.decided and res.won == bool(label), (t, side)
            checked += 1
    assert checked > 250


def test_the_live_regime_equals_the_vectorised_one_on_real_candles():
    from strategies.feature_frame import resample
    from strategies.features import wilder_indicators
    from strategies.regime import REGIMES, last_percentile, percentile_rank, regime_of_candles, regime_series

    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=700), 1)            # ties
    values[rng.choice(700, 40, replace=False)] = np.nan
    for end in (10, 99, 100, 101, 350, 700):
        want = percentile_rank(values[:end], 500)[-1]
        got = last_percentile(values[:end], 500)
        assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want), end

    d = resample(pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz").drop_duplicates("open_time").reset_index(drop=True), 12)
    seen = set()
    for end in range(120, len(d), 97):
        w = d.iloc[max(0, end - 300):end]
        h, lo, c = (w[k].to_numpy() for k in ("high", "low", "close"))
        ind = wilder_indicators(h.reshape(1, -1), lo.reshape(1, -1), c.reshape(1, -1))
        bb = (4.0 * w["close"].rolling(20).std(ddof=0) / w["close"].rolling(20).mean()).to_numpy()
        code = regime_series(ind.adx[0], ind.plus_di[0] - ind.minus_di[0], ind.atr[0] / c * 100.0, bb)[-1]
        live = regime_of_candles(h, lo, c)
        assert live == (REGIMES[code] if code >= 0 else None), end
        seen.add(live)
    assert len(seen) >= 3
