"""Trailing stop (activation, never loosens, minimum step), partial-exit ladder with break-even, time stop,
stale trade, signal exit — hand-computed on ETHUSDT's real filters — and a hypothesis property that the
trailing stop never moves against the position."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.exchange.rules import parse_symbol_rules
from engine.exchange.types import PositionSide
from engine.policy.exits import (
    CloseAll,
    ClosePartial,
    ExitConfig,
    LadderStep,
    MarketState,
    MoveStop,
    PositionState,
    TrailMethod,
    evaluate_exits,
    observe,
)
from strategies.types import Direction

SAMPLE = Path(__file__).parent.parent / "data" / "sample" / "exchange_info.json"
_ENTRIES = {e["symbol"]: e for e in json.loads(SAMPLE.read_text())["symbols"]}
ETH = parse_symbol_rules(_ENTRIES["ETHUSDT"])  # tick 0.01, step 0.001, min qty 0.001
SOL = parse_symbol_rules(_ENTRIES["SOLUSDT"])  # step 1
T0 = datetime(2025, 4, 1, 8, 0, tzinfo=UTC)
CFG = ExitConfig()
NO_TRAIL = replace(CFG, trail_enabled=False)


def long_state(**kw: object) -> PositionState:
    """Long 0.3 ETH at 2000, stop 1960 → R = 40."""
    base = PositionState.opened(trade_id=1, symbol="ETHUSDT", side=PositionSide.LONG, entry_price=D("2000"),
                                quantity=D("0.300"), stop_price=D("1960"), opened_at=T0)
    return replace(base, **kw)


def short_state(**kw: object) -> PositionState:
    """Short 0.3 ETH at 2000, stop 2040 → R = 40."""
    base = PositionState.opened(trade_id=2, symbol="ETHUSDT", side=PositionSide.SHORT, entry_price=D("2000"),
                                quantity=D("0.300"), stop_price=D("2040"), opened_at=T0)
    return replace(base, **kw)


def run(state: PositionState, mark: str, cfg: ExitConfig = CFG, *, now: datetime | None = None,
        **market: object) -> list:
    return evaluate_exits(state, MarketState(D(mark), **market), cfg, now or T0 + timedelta(hours=1), rules=ETH)


# ------------------------------------------------------------------------------------------- trailing
def test_nothing_below_activation():
    assert run(long_state(), "2020") == []          # +0.5 R


def test_first_step_partial_and_break_even():
    # +1 R: close ⅓ of 0.3 = 0.1; stop to break-even 2000 x 1.001 = 2002.00
    actions = run(long_state(), "2040", NO_TRAIL)
    assert actions == [ClosePartial(D("0.100"), "take_profit_1", 0, actions[0].detail),
                       MoveStop(D("2002.00"), "break_even", actions[1].detail)]


def test_trailing_by_peak_share_beats_break_even_and_never_loosens():
    # +1 R with the trail on: keep 50 % of the 40 peak profit → 2020 (tighter than 2002)
    [move] = run(long_state(partials_done=1), "2040")
    assert move == MoveStop(D("2020.00"), "trailing_stop", move.detail)
    # peak 2100 → 2050; back at 2080 the peak is remembered and the stop (already 2050) does not move back
    state = long_state(partials_done=2, stop_price=D("2050.00"), best_price=D("2100"))
    assert run(state, "2080") == []
    assert run(state, "2010") == []  # below the exchange stop: the exchange closes it, nothing to move
    # the stop still at 2002 while the peak was 2100 and the mark is back at 2045: the new trail (2050) is
    # through the mark, the exchange would refuse it → close at market
    behind = replace(state, stop_price=D("2002.00"))
    [close] = run(behind, "2045")
    assert close == CloseAll("trailing_stop", close.detail)


def test_minimum_step_limits_churn():
    state = long_state(partials_done=2, stop_price=D("2050.00"), best_price=D("2100"))
    # peak 2101 → trail 2050.50: +0.50 < 0.1 % of 2101 = 2.101 → no move
    assert run(state, "2101") == []
    # peak 2105 → 2052.50: +2.50 ≥ 2.105 → move
    [move] = run(state, "2105")
    assert move == MoveStop(D("2052.50"), "trailing_stop", move.detail)


def test_trailing_by_atr_and_by_pct_activation():
    atr_cfg = replace(CFG, trail_method=TrailMethod.ATR, trail_atr_mult=D("2"))
    state = long_state(partials_done=2, stop_price=D("2002.00"))
    [move] = run(state, "2100", atr_cfg, atr=D("20"))                   # 2100 − 2 x 20 = 2060
    assert move.new_price == D("2060.00")
    # +0.75 R does not activate by R; 1.5 % of the entry (2030) does when set
    state = long_state(partials_done=2)
    assert run(state, "2030") == []
    [move] = run(state, "2030", replace(CFG, trail_activation_pct=D("1.5")))
    assert move == MoveStop(D("2015.00"), "trailing_stop", move.detail)   # 2000 + 0.5 x 30


def test_high_since_last_tick_counts_for_the_peak():
    # a wick to 2100 between ticks, mark 2060 (1.5 R) now: first partial on the mark; trail 2050 < 2060
    [partial, move] = run(long_state(), "2060", high=D("2100"), low=D("2030"))
    assert move.new_price == D("2050.00") and partial.reason == "take_profit_1"
    seen = observe(long_state(), MarketState(D("2060"), high=D("2100"), low=D("1990")))
    assert (seen.best_price, seen.worst_price) == (D("2100"), D("1990"))


def test_short_mirror_and_rounding_away_from_price():
    # short, best 1940 (+1.5 R): trail 2000 − 0.5 x 60 = 1970; ⅓ closed at 1 R already
    [move] = run(short_state(partials_done=1, best_price=D("1940")), "1945")
    assert move == MoveStop(D("1970.00"), "trailing_stop", move.detail)
    # best 1939.99 → 1969.995 → rounded up (away from the price) to 1970.00; long 2060.01 → 2030.005 → 2030.00
    [move] = run(short_state(partials_done=1, best_price=D("1939.99")), "1945")
    assert move.new_price == D("1970.00")
    [move] = run(long_state(partials_done=2, best_price=D("2060.01")), "2055")
    assert move.new_price == D("2030.00")


# ------------------------------------------------------------------------------------------- ladder
def test_gap_through_two_steps_closes_both():
    actions = run(long_state(), "2085", NO_TRAIL)                           # +2.125 R
    assert [(a.quantity, a.reason, a.step) for a in actions if isinstance(a, ClosePartial)] == [
        (D("0.100"), "take_profit_1", 0), (D("0.100"), "take_profit_2", 1)]
    assert actions[-1] == MoveStop(D("2002.00"), "break_even", actions[-1].detail)
    after = long_state(quantity=D("0.200"), partials_done=1, stop_price=D("2002.00"))
    assert [a.reason for a in run(after, "2085", NO_TRAIL)] == ["take_profit_2"]  # step 1 already done


def test_state_after_partials():
    state = long_state().after_partial(D("0.100"), 0)
    assert (state.quantity, state.partials_done) == (D("0.200"), 1)
    assert state.with_stop(D("2002")).stop_price == D("2002")


def test_step_leaving_dust_closes_everything():
    halves = replace(NO_TRAIL, ladder=(LadderStep(D(1), D("0.5")), LadderStep(D(2), D("0.5"))))
    state = long_state(initial_quantity=D("0.002"), quantity=D("0.001"), partials_done=1, stop_price=D("2002"))
    assert [type(a) for a in run(state, "2081", halves)] == [CloseAll]
    # a step too small for the step size is skipped (1/3 of 1 SOL floors to 0)
    sol = PositionState.opened(trade_id=3, symbol="SOLUSDT", side=PositionSide.LONG, entry_price=D("100"),
                               quantity=D("1"), stop_price=D("98"), opened_at=T0)
    actions = evaluate_exits(sol, MarketState(D("102")), NO_TRAIL, T0 + timedelta(hours=1), rules=SOL)
    assert actions == [MoveStop(D("100.10"), "break_even", actions[0].detail)]


# ------------------------------------------------------------------------------------------- full exits
def test_time_stop():
    state = long_state(best_price=D("2030"))
    assert run(state, "2010", now=T0 + timedelta(hours=71, minutes=59)) == []
    [close] = run(state, "2010", now=T0 + timedelta(hours=72))
    assert close.reason == "time_stop"


def test_stale_trade():
    # 24 h and the best profit 0.25 R < 0.5 R → close; a trade that once reached 0.75 R stays
    [close] = run(long_state(best_price=D("2010")), "2005", now=T0 + timedelta(hours=24))
    assert close.reason == "stale_trade"
    assert run(long_state(best_price=D("2030")), "2005", now=T0 + timedelta(hours=24)) == []
    assert run(long_state(best_price=D("2010")), "2005", now=T0 + timedelta(hours=23)) == []


def test_signal_exit_only_when_strongly_against():
    [close] = run(long_state(), "2010", consensus=Direction.SHORT, consensus_score=0.8)
    assert close.reason == "signal_exit"
    assert run(long_state(), "2010", consensus=Direction.SHORT, consensus_score=0.7) == []
    assert run(long_state(), "2010", consensus=Direction.LONG, consensus_score=0.95) == []
    [close] = run(short_state(), "1990", consensus=Direction.LONG, consensus_score=0.75)
    assert close.reason == "signal_exit"


def test_state_round_trips_through_json():
    state = long_state(partials_done=1, best_price=D("2100.5"), worst_price=D("1990"))
    assert PositionState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_closed_position_has_no_actions():
    assert run(long_state(quantity=D("0")), "2100") == []


# ------------------------------------------------------------------------------------------- property
ticks = st.lists(st.tuples(st.integers(-300, 300), st.integers(0, 150), st.integers(0, 150)), min_size=1,
                 max_size=60)


@settings(max_examples=300, deadline=None)
@given(ticks=ticks, side=st.sampled_from([PositionSide.LONG, PositionSide.SHORT]),
       method=st.sampled_from(list(TrailMethod)), share=st.integers(1, 9), atr=st.integers(1, 80),
       step=st.sampled_from(["0", "0.05", "0.1", "0.5"]))
@pytest.mark.slow
def test_trailing_stop_never_moves_against_the_position(ticks, side, method, share, atr, step):
    cfg = replace(CFG, trail_method=method, trail_lock_share=D(share) / 10, min_stop_step_pct=D(step),
                  time_stop=None, stale_after=None)
    state = long_state() if side is PositionSide.LONG else short_state()
    mark = D("2000")
    for move, up, down in ticks:
        mark = max(mark + D(move) / 10, D("100"))
        market = MarketState(mark, atr=D(atr), high=mark + D(up) / 10, low=max(mark - D(down) / 10, D("50")))
        actions = evaluate_exits(state, market, cfg, T0 + timedelta(hours=1), rules=ETH)
        state = observe(state, market)
        if any(isinstance(a, CloseAll) for a in actions):
            break
        for action in actions:
            if isinstance(action, ClosePartial):
                assert 0 < action.quantity < state.quantity
                state = state.after_partial(action.quantity, action.step)
            elif isinstance(action, MoveStop):
                gain = (action.new_price - state.stop_price) * side.sign
                assert gain > 0 and gain >= mark * cfg.min_stop_step_pct / 100     # tightens, by the min step
                assert (mark - action.new_price) * side.sign > 0                    # still on the safe side
                assert action.new_price % ETH.tick_size == 0
                state = state.with_stop(action.new_price)
