"""The three technical voters (trend following, mean reversion, breakout) and the panel built from VOTERS.

Each voter on hand-built features: a case per direction and FLAT cases with their reasons; its ``vote_arrays``
equal to ``vote`` (direction and confidence, to the bit) on every row of the bundled real data and on hand-set
rows through every branch, thresholds included.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.runtime import build_consensus
from settings import SettingsError, load_settings
from strategies.breakout import BreakoutParams, BreakoutVoter
from strategies.features import Features
from strategies.mean_reversion import MeanReversionParams, MeanReversionVoter
from strategies.panel import VOTER_NAMES, UnknownVoter, build_voters
from strategies.signal_table import SignalConfig, SymbolSignals, build_symbol_signals
from strategies.trend_following import TrendFollowingParams, TrendFollowingVoter
from strategies.types import Direction
from tests.helpers_market import feats, sample_klines
from tests.test_windowed import RowColumns
from tests.trading_fixtures import make_settings

L, S, F = Direction.LONG, Direction.SHORT, Direction.FLAT
NAN = float("nan")


# ---- trend following ---------------------------------------------------------------------------------------

def test_trend_following_long_and_short_on_stacked_trends():
    voter = TrendFollowingVoter()
    up = voter.vote("X", feats(1))
    down = voter.vote("X", feats(-1))
    assert (up.direction, down.direction) == (L, S)
    # ADX 30 on both trend timeframes: (30 - 25) / 25 = 0.2; EMA gap 1.5 ATR of 3: 0.5 → strength 0.35
    assert up.confidence == pytest.approx(0.5 + 0.5 * 0.35) and down.confidence == up.confidence
    assert up.voter == "trend_following" and "1h,4h stacked up" in up.reason and "ADX 30" in up.reason


@pytest.mark.parametrize(("change", "reason"), [
    (dict(tf_1h={"adx": 20.0}, tf_4h={"adx": 29.8}), "no trend: ADX 24.9 < 25"),
    (dict(tf_4h={"plus_di": 10.0}), "EMAs and DI of 1h,4h not aligned"),
    (dict(tf_1h={"close": 100.4}), "EMAs and DI of 1h,4h not aligned"),   # below the fast EMA
    (dict(tf_4h={"ema_fast": 99.0}), "EMAs and DI of 1h,4h not aligned"),  # fast EMA under the slow one
    (dict(tf_4h={"adx": NAN}), "indicators not defined yet"),
])
def test_trend_following_flat(change, reason):
    vote = TrendFollowingVoter().vote("X", feats(1, **change))
    assert (vote.direction, vote.confidence, vote.reason) == (F, 0.0, reason)


def test_trend_following_ignores_momentum_and_extension():
    """Unlike trend_momentum: an overbought, over-extended entry in a stacked trend still follows the trend."""
    vote = TrendFollowingVoter().vote("X", feats(1, tf_15m={"rsi": 85.0, "macd_hist": -1.0},
                                                  tf_5m={"extension": 4.0}))
    assert vote.direction is L


# ---- mean reversion ------------------------------------------------------------------------------------------

def ranging(pct_b: float, rsi: float, **more: dict) -> Features:
    """Features of a range: ADX 15 everywhere, the 15m close at ``pct_b`` with RSI ``rsi``."""
    per_tf = {f"tf_{tf}": {"adx": 15.0} for tf in ("5m", "15m", "1h", "4h")}
    per_tf["tf_15m"].update(bb_pct_b=pct_b, rsi=rsi)
    for key, values in more.items():
        per_tf[key] = {**per_tf[key], **values}
    return feats(1, **per_tf)


def test_mean_reversion_fades_band_extremes_in_a_range():
    voter = MeanReversionVoter()
    low = voter.vote("X", ranging(-0.25, 22.0))
    high = voter.vote("X", ranging(1.25, 78.0))
    assert (low.direction, high.direction) == (L, S)
    # beyond the band 0.25 of 0.5 → 0.5; RSI 8 points past 30 of 10 → 0.8; strength 0.65
    assert low.confidence == pytest.approx(0.5 + 0.5 * 0.65) and high.confidence == pytest.approx(low.confidence)
    assert "15m below the lower band" in low.reason and "toward the mean" in low.reason


@pytest.mark.parametrize(("features", "reason"), [
    (ranging(-0.2, 22.0, tf_1h={"adx": 30.0}), "not ranging: ADX 15m 15.0, 1h,4h 22.5 (needs < 20)"),
    (feats(1, tf_15m={"bb_pct_b": -0.2, "rsi": 22.0}), "not ranging: ADX 15m 30.0, 1h,4h 30.0 (needs < 20)"),
    (ranging(0.5, 50.0), "15m inside the Bollinger bands (%B 0.50)"),
    (ranging(0.0, 20.0), "15m inside the Bollinger bands (%B 0.00)"),  # on the band is not beyond it
    (ranging(-0.2, 35.0), "15m below the lower band but RSI 35 not extreme"),
    (ranging(1.2, 65.0), "15m above the upper band but RSI 65 not extreme"),
    (ranging(NAN, 20.0), "indicators not defined yet"),
])
def test_mean_reversion_flat(features, reason):
    vote = MeanReversionVoter().vote("X", features)
    assert (vote.direction, vote.confidence, vote.reason) == (F, 0.0, reason)


def test_mean_reversion_on_the_entry_timeframe():
    f = ranging(0.5, 50.0, tf_5m={"adx": 15.0, "bb_pct_b": 1.5, "rsi": 90.0})
    vote = MeanReversionVoter(MeanReversionParams(timeframe="entry")).vote("X", f)
    assert vote.direction is S and vote.confidence == 1.0 and "5m above the upper band" in vote.reason


# ---- breakout ------------------------------------------------------------------------------------------------

def test_breakout_follows_a_band_break_on_high_volume():
    voter = BreakoutVoter()
    up = voter.vote("X", feats(1, tf_15m={"bb_pct_b": 1.1, "volume_z": 3.0}))
    down = voter.vote("X", feats(1, tf_15m={"bb_pct_b": -0.5, "volume_z": 5.0}))
    assert (up.direction, down.direction) == (L, S)
    # volume (3 - 2) / 2 = 0.5, band 0.1 / 0.5 = 0.2 → 0.35; the other is full on both
    assert up.confidence == pytest.approx(0.675) and down.confidence == 1.0
    assert up.reason == "15m closed above the upper band (%B 1.10) on volume z 3.0"


@pytest.mark.parametrize(("tf_15m", "reason"), [
    ({"bb_pct_b": 1.1, "volume_z": 1.9}, "15m closed above the upper band on ordinary volume (z 1.9 < 2)"),
    ({"bb_pct_b": -0.1, "volume_z": 0.0}, "15m closed below the lower band on ordinary volume (z 0.0 < 2)"),
    ({"bb_pct_b": 1.0, "volume_z": 6.0}, "15m inside the Bollinger bands (%B 1.00)"),
    ({"bb_pct_b": NAN, "volume_z": 6.0}, "indicators not defined yet"),
])
def test_breakout_flat(tf_15m, reason):
    vote = BreakoutVoter().vote("X", feats(1, tf_15m=tf_15m))
    assert (vote.direction, vote.confidence, vote.reason) == (F, 0.0, reason)


@pytest.mark.parametrize("make", [
    lambda: TrendFollowingParams(adx_full=20.0), lambda: TrendFollowingParams(base_confidence=1.5),
    lambda: MeanReversionParams(rsi_oversold=70.0, rsi_overbought=30.0),
    lambda: MeanReversionParams(timeframe="trend"),  # type: ignore[arg-type]
    lambda: MeanReversionParams(band_full=0.0), lambda: BreakoutParams(volume_z_full=1.0),
    lambda: BreakoutParams(min_volume_z=-1.0),
])
def test_bad_parameters_are_refused(make):
    with pytest.raises(ValueError):
        make()


# ---- vote_arrays == vote -----------------------------------------------------------------------------------

VOTERS = (TrendFollowingVoter(), MeanReversionVoter(), BreakoutVoter(),
          MeanReversionVoter(MeanReversionParams(timeframe="entry"), name="mr_entry"),
          BreakoutVoter(BreakoutParams(timeframe="entry"), name="bo_entry"))


def edge_rows() -> list[Features]:
    """Hand-set rows through every branch, thresholds exactly on their levels included."""
    rows = [feats(1), feats(-1)]
    for d in (1, -1):
        rows += [feats(d, tf_1h={"adx": 20.0}, tf_4h={"adx": 30.0}),
                 feats(d, tf_1h={"adx": 19.99}, tf_4h={"adx": 30.0}),
                 feats(d, tf_4h={"plus_di": 15.0, "minus_di": 15.0}), feats(d, tf_1h={"close": 100.5 * d}),
                 feats(d, tf_4h={"trend": 9.0 * d}), feats(d, tf_1h={"adx": 60.0}), feats(d, tf_4h={"atr": 0.0})]
        for tf in ("5m", "15m"):
            rows += [feats(d, **{f"tf_{tf}": {"bb_pct_b": b, "volume_z": z}})
                     for b in (-0.7, -0.01, 0.0, 1.0, 1.3) for z in (1.99, 2.0, 3.5, 9.0, NAN)]
    for pct_b in (-0.6, -0.1, 0.0, 0.5, 1.0, 1.2, NAN):
        for rsi in (10.0, 30.0, 30.01, 50.0, 69.99, 70.0, 95.0):
            rows += [ranging(pct_b, rsi), ranging(pct_b, rsi, tf_1h={"adx": 19.0}, tf_4h={"adx": 21.0}),
                     ranging(0.5, 50.0, tf_5m={"adx": 10.0, "bb_pct_b": pct_b, "rsi": rsi})]
    rows.append(ranging(-0.3, 20.0, tf_15m={"adx": 20.0, "bb_pct_b": -0.3, "rsi": 20.0}))
    return rows


def assert_arrays_equal_votes(voter, rows: list[Features], columns) -> set[Direction]:
    direction, confidence = voter.vote_arrays(columns)
    assert direction.dtype == np.int8 and len(direction) == len(rows) == len(confidence)
    seen = set()
    for k, f in enumerate(rows):
        vote = voter.vote("X", f)
        assert (int(vote.direction), vote.confidence) == (direction[k], confidence[k]), (voter.name, k, vote.reason)
        seen.add(vote.direction)
    return seen


@pytest.mark.parametrize("voter", VOTERS, ids=lambda v: v.name)
def test_vote_arrays_equal_vote_on_hand_set_rows(voter):
    rows = edge_rows()
    assert assert_arrays_equal_votes(voter, rows, RowColumns(rows)) == {L, S, F}


@pytest.fixture(scope="module")
def btc_table() -> tuple[SymbolSignals, list[Features | None]]:
    """The BTC sample's signal table (features kept) and every row's ``Features`` (None where not scanned)."""
    settings = make_settings(voters=list(VOTER_NAMES))
    table = build_symbol_signals(sample_klines("BTCUSDT"), build_consensus(settings),
                                 SignalConfig.from_settings(settings), keep_features=True)
    return table, [table.features_at(i) for i in range(len(table))]


@pytest.mark.slow  # every row of the BTC sample: ~50k Features objects built and voted on
@pytest.mark.parametrize("voter", VOTERS, ids=lambda v: v.name)
def test_vote_arrays_equal_vote_on_every_row_of_real_data(btc_table, voter):
    table, features = btc_table
    direction, confidence = voter.vote_arrays(table)
    valid = table.valid
    assert valid.sum() > 30_000
    assert not direction[~valid].any() and not confidence[~valid].any()  # rows the scan leaves out: FLAT
    seen = set()
    for i in np.flatnonzero(valid):
        vote = voter.vote("BTCUSDT", features[i])  # type: ignore[arg-type]
        assert (int(vote.direction), vote.confidence) == (direction[i], confidence[i]), (voter.name, i, vote.reason)
        seen.add(vote.direction)
    assert seen == {L, S, F}, voter.name  # the real data reaches both sides of every rule


# ---- the panel from VOTERS -----------------------------------------------------------------------------------

def test_the_default_panel_is_trend_momentum_alone():
    consensus = build_consensus(make_settings())
    assert [v.name for v in consensus.voters] == ["trend_momentum"]
    assert (consensus.threshold, consensus.min_agree, consensus.min_agreement) == (0.6, 1, 0.0)


def test_the_panel_follows_the_settings():
    settings = make_settings(voters="Breakout, trend_following", min_agreeing_voters=2, min_agreement=0.5,
                             entry_threshold=0.4)
    consensus = build_consensus(settings)
    assert [v.name for v in consensus.voters] == ["breakout", "trend_following"]
    assert (consensus.threshold, consensus.min_agree, consensus.min_agreement) == (0.4, 2, 0.5)


def test_an_unknown_voter_is_one_line_naming_the_valid_ones(tmp_path):
    env = tmp_path / ".env"
    env.write_text("VOTERS=trend_momentum,lstm\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert len(caught.value.lines) == 1
    line = caught.value.lines[0]
    assert line.startswith("VOTERS") and "lstm" in line and all(n in line for n in VOTER_NAMES)
    with pytest.raises(UnknownVoter, match="valid voters: trend_momentum, trend_following"):
        build_voters(["nope"])
    with pytest.raises(UnknownVoter, match="listed twice: breakout"):
        build_voters(["breakout", "breakout"])
    env.write_text("VOTERS=\n")
    with pytest.raises(SettingsError, match="no voter listed"):
        load_settings(env)
