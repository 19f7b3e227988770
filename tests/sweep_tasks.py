"""A real sweep task for the sweep tests: an EMA-cross rule's gross return on real closes.

It lives in an importable module (not the test file) so Dask and joblib workers can import it by name.
``Closes`` counts, per process, how many times it was unpickled: on a worker that is how many times the
data was shipped to it."""

from __future__ import annotations

import gzip
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
LOADS: Counter[str] = Counter()


@dataclass(frozen=True)
class Closes:
    symbol: str
    close: np.ndarray

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.symbol, self.close))


def _rebuild(symbol: str, close: np.ndarray) -> Closes:
    LOADS[symbol] += 1
    return Closes(symbol, close)


def loads(symbol: str) -> int:
    """How many times ``symbol``'s closes were unpickled in this process (run on each Dask worker)."""
    return LOADS[symbol]


def sample_closes(symbol: str = "BTCUSDT") -> Closes:
    with gzip.open(SAMPLE / f"{symbol}-5m.csv.gz", "rt") as fh:
        frame = pd.read_csv(fh, usecols=["close"])
    return Closes(symbol, frame["close"].to_numpy(dtype=np.float64))


def ema_cross(params: dict[str, Any], data: Closes) -> dict[str, float]:
    """Long when EMA(fast) > EMA(slow), short below, decided on a close and held over the next candle."""
    fast, slow = int(params["fast"]), int(params["slow"])
    if not 1 <= fast < slow:
        raise ValueError(f"fast ({fast}) must be below slow ({slow})")
    close = pd.Series(data.close)
    diff = (close.ewm(span=fast, adjust=False).mean() - close.ewm(span=slow, adjust=False).mean()).to_numpy()
    position = np.sign(diff)[slow:-1]
    log_returns = np.diff(np.log(data.close))[slow:]
    gross = float(np.exp(np.sum(position * log_returns)) - 1.0)
    return {"gross_return_pct": gross * 100.0, "flips": float(np.count_nonzero(np.diff(position))),
            "long_share": float(np.mean(position > 0))}
