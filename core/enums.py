"""The shared vocabulary: enums that cross module boundaries. StrEnums, so they store and compare as their values."""

from __future__ import annotations

from enum import StrEnum


class VoterKind(StrEnum):
    """What kind of voter cast a vote; stored with every vote (``/model`` and the retrainer read the ML voter's)."""

    RULE = "rule"   # the local technical voters (strategies.rules and the voters built on them)
    ML = "ml"       # the scikit-learn voter (strategies.ml_voter)
    LLM = "llm"     # an LLM provider (strategies.llm)


class Mode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class Side(StrEnum):
    """An order's side."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is PositionSide.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        return Side.SELL if self is PositionSide.LONG else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is PositionSide.LONG else -1


class ExitReason(StrEnum):
    """Why a trade closed, as booked and reported."""

    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    TIME_STOP = "time_stop"
    STALE_TRADE = "stale_trade"
    SIGNAL_EXIT = "signal_exit"
    LIQUIDATION = "liquidation"
    ADL = "adl"
    MANUAL = "manual"                # closed outside Vigil (by hand on Binance)
    MANUAL_CLOSE = "manual_close"    # the operator's /close
    KILL_SWITCH = "kill_switch"
    BREAKER_CLOSE_ALL = "breaker_close_all"
    MODE_SWITCH = "mode_switch"
    END_OF_DATA = "end_of_data"      # backtests: still open when the data ends


class OrderPurpose(StrEnum):
    ENTRY = "ENTRY"
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"
    EXIT = "EXIT"
    PARTIAL = "PARTIAL"

    @property
    def code(self) -> str:
        return _PURPOSE_CODE[self]


_PURPOSE_CODE = {
    OrderPurpose.ENTRY: "E",
    OrderPurpose.STOP_LOSS: "S",
    OrderPurpose.TAKE_PROFIT: "T",
    OrderPurpose.EXIT: "X",
    OrderPurpose.PARTIAL: "P",
}
