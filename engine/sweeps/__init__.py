"""Parameter sweeps: a grid from ``KEY=v1,v2`` specs, run through joblib or an existing Dask cluster."""

from engine.sweeps.grid import Axis, Grid, GridError, Value, parse_grid
from engine.sweeps.runner import Backend, SweepError, SweepResult, SweepRow, run_sweep

__all__ = ["Axis", "Backend", "Grid", "GridError", "SweepError", "SweepResult", "SweepRow", "Value", "parse_grid",
           "run_sweep"]
