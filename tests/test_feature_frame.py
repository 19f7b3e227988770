"""The model's feature frame is causal: recomputed on data truncated at t, every row ≤ t is unchanged, on the
bundled real data; higher timeframes appear only after their candle closes; nothing bridges a gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategies.feature_frame import FIVE_MIN_MS, add_funding, build_features, symbol_features
from tests.helpers_market import SAMPLE_DIR, sample_frame

HOUR = 3_600_000


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    return sample_frame("ETHUSDT").iloc[:12_000].reset_index(drop=True)


@pytest.fixture(scope="module")
def full(eth) -> pd.DataFrame:
    return symbol_features(eth)


def test_every_family_on_every_timeframe(full):
    for tf in ("5m", "15m", "1h", "4h"):
        for name in ("ret_1", "ret_48", "ema_fast_slope", "ema_align", "rsi", "macd_hist", "bb_width", "bb_pctb",
                     "atr_pct", "adx", "stoch_k", "obv_slope", "volume_z", "mfi", "realised_vol", "body"):
            column = full[f"{tf}_{name}"]
            assert column.iloc[-2000:].notna().all(), f"{tf}_{name}"
    assert full["5m_rsi"].dropna().between(0, 100).all() and full["5m_mfi"].dropna().between(0, 100).all()


@pytest.mark.parametrize("cut", [1_000, 2_345, 5_000, 7_777, 11_111, 11_999])
def test_truncated_data_gives_the_same_rows(eth, full, cut):
    part = symbol_features(eth.iloc[: cut + 1])
    pd.testing.assert_frame_equal(part, full.iloc[: cut + 1], check_exact=False, rtol=1e-9, atol=1e-12)


def test_an_hour_is_visible_only_after_it_closes(eth, full):
    opens = eth["open_time"].to_numpy()
    i = int(np.flatnonzero(opens % HOUR == 0)[100])     # a 5m candle opening on the hour
    # rows i .. i+10 (closing within the hour) still see the previous hour; row i+11 closes the hour and sees it
    before = full["1h_ret_1"].iloc[i:i + 11]
    assert before.nunique() == 1
    assert full["1h_ret_1"].iloc[i + 11] != before.iloc[0]
    hour = eth.iloc[i:i + 12]
    expected = np.log(hour["close"].iloc[-1]) - np.log(eth["close"].iloc[i - 1])
    assert full["1h_ret_1"].iloc[i + 11] == pytest.approx(expected, rel=1e-12)


def test_nothing_bridges_a_gap(eth):
    gapped = pd.concat([eth.iloc[:6_000], eth.iloc[6_500:]], ignore_index=True)
    f = symbol_features(gapped)
    after = f.iloc[6_000:]
    # right after the gap: every indicator restarts, so the long-window ones are unknown
    assert after["5m_rsi"].iloc[:5].isna().all() and after["1h_ret_1"].iloc[:12].isna().all()
    assert after["4h_ret_48"].iloc[:2_000].isna().all()
    # and later rows equal the features of the second piece computed alone
    alone = symbol_features(eth.iloc[6_500:].reset_index(drop=True))
    pd.testing.assert_frame_equal(f.iloc[6_000:], alone, check_exact=False, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_funding_breadth_and_btc_context_are_causal():
    frames = {s: sample_frame(s).iloc[:8_000].reset_index(drop=True) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
    funding = {s: pd.read_csv(SAMPLE_DIR / f"{s}-funding.csv.gz") for s in frames}
    full = build_features(frames, funding)
    cut = {s: f.iloc[:5_001].reset_index(drop=True) for s, f in frames.items()}
    part = build_features(cut, funding)
    for s in frames:
        pd.testing.assert_frame_equal(part[s], full[s].iloc[:5_001], check_exact=False, rtol=1e-9, atol=1e-12)
        assert full[s]["breadth"].dropna().between(0, 1).all()
    eth = add_funding(symbol_features(frames["ETHUSDT"]), funding["ETHUSDT"])
    settle = int(funding["ETHUSDT"]["funding_time"].iloc[3])
    row_before = eth.index.get_loc(settle - 2 * FIVE_MIN_MS)      # closes 5 min before the settlement
    row_at = eth.index.get_loc(settle - FIVE_MIN_MS)              # closes at it
    assert eth["funding_rate"].iloc[row_before] == funding["ETHUSDT"]["funding_rate"].iloc[2]
    assert eth["funding_rate"].iloc[row_at] == funding["ETHUSDT"]["funding_rate"].iloc[3]
