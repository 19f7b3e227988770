"""The running bot's wiring (real runtime, paper mode, the fake Binance server): a weekly ``retrain`` job on the
scheduler, the live check after the vote book resolves, the weekly job starting the child process and alerting, a
promoted model swapped into the running panel; without a model there is nothing to retrain."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.retrainer import Retrainer
from app.runtime import RETRAIN_KEY, Runtime
from core.clock import ExchangeClock
from engine.events import Alert, EventBus, RecordingSink
from settings import Settings
from storage.db import Database
from storage.repositories import Repositories
from strategies.ml_voter import MLVoter, feature_names
from strategies.model_store import read_meta
from strategies.model_swap import install, previous_path, staged_path
from tests.fakes.binance_server import FakeBinanceFutures
from tests.retrain_fixtures import constant_model, save_pair


async def overdue(runtime: Runtime) -> None:
    """As if the last scheduled retrain started eight days ago."""
    then = runtime.clock.now() - timedelta(days=8)  # the engine clock (the fake exchange's time)
    await runtime.repos.state.set(RETRAIN_KEY, then.isoformat(), then)


async def test_the_weekly_job_and_the_live_check_are_wired(tmp_path: Path) -> None:
    async with FakeBinanceFutures() as fake:
        s = Settings(_env_file=None, binance_base_url=fake.base_url, data_dir=tmp_path,  # type: ignore[call-arg]
                     symbols=["BTCUSDT", "ETHUSDT"], universe_size=2, paper_trigger_interval="5m", retrain_days=7)
        save_pair(s.ml_model_file, constant_model(0.3), feature_names(s.timeframes), train_end="2025-02-01T00:00:00Z")
        db = await Database(s.db_path).open()
        bus, sink = EventBus(), RecordingSink()
        bus.subscribe(sink)
        runtime = Runtime(s, Repositories(db), bus, ExchangeClock())
        try:
            await runtime.start()
            vote_log = runtime.trader.vote_log
            assert vote_log is not None and runtime.check_retrain in vote_log.on_resolved
            runtime.retrainer = Retrainer(bus, runtime.clock, timeout=60, command=[
                sys.executable, "-c", "print('retrain: kept: stand-in'); raise SystemExit(3)"])
            scheduler = runtime.start_scheduler()
            job = scheduler.scheduler.get_job("retrain")
            assert job is not None
            assert abs(job.next_run_time - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
            assert not await runtime.weekly_retrain()  # the first start only sets the clock going
            await overdue(runtime)
            assert await runtime.weekly_retrain()
            result = await runtime.retrainer.wait()
            assert result is not None and result.outcome == "kept"
            assert [a.detail["outcome"] for a in sink.of(Alert)] == ["kept"]
            assert not await runtime.weekly_retrain()  # the next one is due in RETRAIN_DAYS, restarts or not
            await runtime.check_retrain()   # no resolved ML votes yet: nothing starts
            assert not runtime.retrainer.running and len(runtime.retrainer.results) == 1

            # a promotion (the stand-in child installs a staged model as retrain does) is loaded between scans
            model = s.ml_model_file
            save_pair(staged_path(model), constant_model(0.6), feature_names(s.timeframes),
                      train_end="2025-03-09T00:00:00Z")
            runtime.retrainer.command = [sys.executable, "-c", (
                "from pathlib import Path; from strategies.model_swap import install, staged_path; "
                f"p = Path({str(model)!r}); install(staged_path(p), p); print('retrain: promoted: stand-in')")]
            await overdue(runtime)
            assert await runtime.weekly_retrain()
            result = await runtime.retrainer.wait()
            assert result is not None and result.outcome == "promoted"
            [ml] = [v for v in runtime.trader.consensus.voters if isinstance(v, MLVoter)]
            assert "2025-03-09" in ml.description
            assert sink.of(Alert)[-1].detail["outcome"] == "promoted"
            assert read_meta(previous_path(model)).train_end == "2025-02-01T00:00:00Z"

            # promoted while a scan runs: that scan keeps its model, the next one starts with the new one
            save_pair(staged_path(model), constant_model(0.4), feature_names(s.timeframes),
                      train_end="2025-03-16T00:00:00Z")
            install(staged_path(model), model)
            async with scheduler._locks["scan"]:  # a scan in flight holds it
                told = await runtime.reload_ml_voter()
                assert told.startswith("In use from the next scan")
                [ml] = [v for v in runtime.trader.consensus.voters if isinstance(v, MLVoter)]
                assert "2025-03-09" in ml.description
            await runtime.run_scan()
            [ml] = [v for v in runtime.trader.consensus.voters if isinstance(v, MLVoter)]
            assert "2025-03-16" in ml.description
            s.ml_model_file.unlink()
            await overdue(runtime)
            assert not await runtime.weekly_retrain()  # no model in use: nothing to retrain
            assert not runtime.retrainer.running and len(runtime.retrainer.results) == 2
        finally:
            await runtime.close()
            await db.close()
