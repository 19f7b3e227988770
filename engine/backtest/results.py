"""What a backtest produces, whichever engine ran it (fast or replay): the boundary between the engines and the
metrics, report, JSON and sweeps. Money is ``Decimal`` (what the account booked); the equity curve is float."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from core.enums import PositionSide


@dataclass(frozen=True, slots=True)
class TradeResult:
    """One closed trade. ``quantity`` is the size at entry (partial exits included in ``net_pnl``); ``risk`` is the
    money at risk at entry, ``|entry − initial stop| × quantity`` (0 when the trade had no stop), for R multiples."""

    symbol: str
    side: PositionSide
    opened_at: datetime
    closed_at: datetime
    entry_price: Decimal
    exit_price: Decimal
    quantity: Decimal
    exit_reason: str
    net_pnl: Decimal
    fees: Decimal
    funding: Decimal
    risk: Decimal = Decimal(0)

    @property
    def r_multiple(self) -> float | None:
        return float(self.net_pnl / self.risk) if self.risk > 0 else None

    @property
    def return_pct(self) -> float:
        """Net P&L over the entry notional, in %."""
        notional = self.entry_price * self.quantity
        return float(self.net_pnl / notional * 100) if notional > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "side": self.side.value, "opened_at": iso(self.opened_at),
            "closed_at": iso(self.closed_at), "entry_price": str(self.entry_price),
            "exit_price": str(self.exit_price), "quantity": str(self.quantity), "exit_reason": str(self.exit_reason),
            "net_pnl": str(self.net_pnl), "fees": str(self.fees), "funding": str(self.funding),
            "risk": str(self.risk),
        }


@dataclass(frozen=True, slots=True)
class DataGap:
    """Candles missing from the data: no indicator and no trade bridges ``[start, end)``."""

    symbol: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class HaltNotice:
    """Entries stopped for the rest of the run (or until a simulated operator reset)."""

    time: datetime
    reason: str
    resumed_at: datetime | None = None


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    strategy: str
    engine: str
    symbols: tuple[str, ...]
    start: datetime
    end: datetime                  # exclusive
    start_equity: Decimal
    end_equity: Decimal
    trades: tuple[TradeResult, ...]
    equity_ms: np.ndarray          # int64 epoch ms, one point per candle close (or coarser)
    equity: np.ndarray             # float64 account equity at those times (wallet + unrealised)
    candles: int                   # candles walked, all symbols
    open_at_end: int = 0           # trades force-closed at the end (booked with ExitReason.END_OF_DATA)
    halts: tuple[HaltNotice, ...] = ()
    gaps: tuple[DataGap, ...] = ()
    wall_seconds: float = 0.0


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
