"""Sweeps: typed grids from KEY=v1,v2 specs, and the same table from a serial run, joblib processes and a real
Dask cluster, on a real computation (an EMA-cross rule on the bundled BTCUSDT candles), with the data shipped
once per Dask worker."""

from __future__ import annotations

import argparse
import time

import pytest

from engine.sweeps import Backend, GridError, SweepError, parse_grid, run_sweep
from engine.sweeps.cli import add_sweep_arguments, sweep_options
from tests import sweep_tasks
from tests.sweep_tasks import ema_cross, sample_closes

distributed = pytest.importorskip("distributed")

SPECS = ["fast=5,12,26", "slow=50,100"]


@pytest.fixture(scope="module")
def closes() -> sweep_tasks.Closes:
    return sample_closes("BTCUSDT")


@pytest.fixture(scope="module")
def serial(closes):
    return run_sweep(ema_cross, parse_grid(SPECS).points(), closes, jobs=1)


def as_table(result) -> list[tuple]:
    return [(r.index, tuple(r.params.items()), tuple(r.metrics.items()), r.error) for r in result.rows]


# ----------------------------------------------------------------------------------------------- grid
def test_values_are_typed_and_the_grid_is_the_product_in_order():
    grid = parse_grid(["fast=5,10", "atr=1,1.5", "trail=true,false", "strategy=default,ema-cross"])
    assert grid.keys == ("fast", "atr", "trail", "strategy")
    assert [a.values for a in grid.axes] == [(5, 10), (1.0, 1.5), (True, False), ("default", "ema-cross")]
    assert grid.size == 16 and len(grid.points()) == 16
    assert grid.points()[:2] == [{"fast": 5, "atr": 1.0, "trail": True, "strategy": "default"},
                                 {"fast": 5, "atr": 1.0, "trail": True, "strategy": "ema-cross"}]
    assert parse_grid(["risk=0.1:0.5:0.1"]).axes[0].values == (0.1, 0.2, 0.3, 0.4, 0.5)  # no float drift
    assert parse_grid(["slow=50:200:50", "x=-2,3"]).axes[0].values == (50, 100, 150, 200)
    assert parse_grid([]).points() == [{}]


def test_declared_types_coerce_and_refuse():
    types = {"fast": int, "atr": float, "trail": bool}
    grid = parse_grid(["atr=1,2", "fast=5"], types)
    assert grid.axes[0].values == (1.0, 2.0) and isinstance(grid.axes[0].values[0], float)
    with pytest.raises(GridError, match=r"fast takes whole numbers, got 5.5"):
        parse_grid(["fast=5,5.5"], types)
    with pytest.raises(GridError, match=r"unknown sweep key 'fsat'; known keys: atr, fast, trail"):
        parse_grid(["fsat=5"], types)
    with pytest.raises(GridError, match=r"trail takes true or false, got 1"):
        parse_grid(["trail=1"], types)


@pytest.mark.parametrize(("specs", "message"), [
    (["fast"], "'fast' is not KEY=v1,v2,... (e.g. fast=5,10,20)"),
    (["=5"], "'=5' is not KEY=v1,v2,..."),
    (["fast="], "fast= has no values (e.g. fast=1,2,3)"),
    (["fast=5,,10"], "'fast=5,,10' has an empty value between commas"),
    (["fast=5,abc"], "fast mixes kinds of values (5, 'abc')"),
    (["fast=5,5"], "fast: value 5 is given twice"),
    (["fast=5", "fast=10"], "fast is swept twice; give all its values in one fast=v1,v2,..."),
    (["x=5:1:1"], "x: range '5:1:1' needs lo <= hi and a positive step"),
    (["x=1e999"], "'1e999' is too large a number"),
    (["a b=1"], "'a b' is not a parameter name"),
    (["a=1:100000:1", "b=1,2"], "a: range '1:100000:1' has 100,000 values (more than 10,000)"),
    (["a=1:5000:1", "b=1:50:1"], "the sweep has 250,000 points (more than 100,000)"),
])
def test_bad_specs_get_one_clear_line(specs, message):
    with pytest.raises(GridError) as info:
        parse_grid(specs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_command_line_options():
    parser = argparse.ArgumentParser()
    add_sweep_arguments(parser, default_metric="sharpe")
    args = parser.parse_args(["--sweep", "fast=5,10", "--sweep", "slow=50", "--jobs", "2", "--top", "3"])
    options = sweep_options(args, {"fast": int, "slow": int})
    assert options is not None
    assert (options.grid.size, options.jobs, options.sort_by, options.descending, options.top) == (2, 2, "sharpe",
                                                                                                  True, 3)
    assert sweep_options(parser.parse_args([])) is None
    with pytest.raises(ValueError, match="--jobs must be a positive number"):
        sweep_options(parser.parse_args(["--sweep", "fast=5", "--jobs", "0"]))


# ----------------------------------------------------------------------------------------------- runs
def test_the_serial_sweep_is_real_and_sorted_by_the_chosen_metric(serial, closes):
    assert serial.backend is Backend.SERIAL and len(serial.rows) == 6 and not serial.failed
    assert serial.rows[0].metrics == ema_cross({"fast": 5, "slow": 50}, closes)
    returns = {(r.params["fast"], r.params["slow"]): r.metrics["gross_return_pct"] for r in serial.rows}
    assert len(set(returns.values())) == 6  # every pair trades differently on real data
    best = serial.sorted_by("gross_return_pct")
    assert [r.metrics["gross_return_pct"] for r in best] == sorted(returns.values(), reverse=True)
    assert [r.metrics["flips"] for r in serial.sorted_by("flips", descending=False)] == sorted(
        r.metrics["flips"] for r in serial.rows)
    text = serial.table("gross_return_pct", top=3).splitlines()
    assert text[0].startswith("6 runs on serial (1 worker(s)) in ") and "sorted by gross_return_pct" in text[0]
    assert text[1].split() == ["#", "fast", "slow", "gross_return_pct", "flips", "long_share"]
    assert len(text) == 5 and text[2].split()[1:3] == [str(best[0].params["fast"]), str(best[0].params["slow"])]
    with pytest.raises(SweepError, match="no metric 'sharpe' in the results; metrics: gross_return_pct, flips"):
        serial.sorted_by("sharpe")


def test_a_failing_point_is_reported_and_sorted_last(closes):
    result = run_sweep(ema_cross, parse_grid(["fast=20,80", "slow=50"]).points(), closes)
    assert [r.error for r in result.rows] == [None, "ValueError: fast (80) must be below slow (50)"]
    assert result.sorted_by("gross_return_pct")[-1].params == {"fast": 80, "slow": 50}
    assert "failed: ValueError: fast (80) must be below slow (50)" in result.table("gross_return_pct")
    assert "; 1 failed" in result.table("gross_return_pct").splitlines()[0]


@pytest.mark.slow
def test_joblib_processes_give_the_serial_table(serial, closes):
    result = run_sweep(ema_cross, parse_grid(SPECS).points(), closes, jobs=2)
    assert result.backend is Backend.JOBLIB and result.workers == 2
    assert as_table(result) == as_table(serial)


def test_an_in_process_dask_cluster_gives_the_serial_table(serial, closes):
    from distributed import Client, LocalCluster

    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                       silence_logs=40) as cluster, Client(cluster, set_as_default=False) as client):
        result = run_sweep(ema_cross, parse_grid(SPECS).points(), closes, dask_client=client)
        deadline = time.monotonic() + 10
        while any(client.has_what().values()) and time.monotonic() < deadline:  # cancel is asynchronous
            time.sleep(0.02)
        assert not any(client.has_what().values())  # the shared data and results are released
    assert (result.backend, result.workers) == (Backend.DASK, 2)
    assert as_table(result) == as_table(serial)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_serial_table_and_gets_the_data_once_per_worker(serial, closes):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_port=0, silence_logs=40) as cluster:
        result = run_sweep(ema_cross, parse_grid(SPECS).points(), closes, dask_scheduler=cluster.scheduler_address)
        assert result.backend is Backend.DASK and result.workers == 2
        assert as_table(result) == as_table(serial)
        with Client(cluster, set_as_default=False) as client:
            shipped = client.run(sweep_tasks.loads, "BTCUSDT")
    assert sorted(shipped.values()) == [1, 1]  # 6 tasks, 2 workers: the closes arrived once on each


def test_an_unreachable_scheduler_is_one_clear_line(closes, monkeypatch):
    monkeypatch.setattr("engine.sweeps.runner.DASK_CONNECT_TIMEOUT", 0.2)  # port 9 refuses: it always fires
    with pytest.raises(SweepError, match=r"could not reach the Dask scheduler at 'tcp://127.0.0.1:9' .*check the "
                                         r"address \(tcp://host:8786\)"):
        run_sweep(ema_cross, [{"fast": 5, "slow": 50}], closes, dask_scheduler="tcp://127.0.0.1:9")
