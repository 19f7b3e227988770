"""The running bot's retraining: ``python main.py retrain`` as a child process, never on the event loop's thread.

- ``start(reason)`` returns at once: the child runs in a task (``asyncio.create_subprocess_exec``) at low priority
  (``os.nice(RETRAIN_NICE)`` in the child), with a timeout; one retrain at a time (a second start while one runs is
  refused and returns False).
- Its exit code says what happened (0 promoted, 3 kept, else failed; ``app.retrain``) and the last line of its output
  says why; the operator gets an ``Alert`` either way. A promoted model is handed to ``on_promoted`` (the runtime
  swaps it into the panel between scans) and the alert says whether it is in use.
- ``check_live`` runs after the vote book resolved outcomes: a retrain starts when the live hit rate of the last
  ``MODEL_LIVE_WINDOW`` resolved ML votes falls below the bar (``engine.policy.retrain_trigger``), at most once per
  ``LIVE_COOLDOWN`` (a model kept after a retrain would otherwise be retrained after every resolve).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from core.clock import Clock
from core.enums import VoterKind
from engine.events import Alert, EventBus, Level
from engine.policy.retrain_trigger import TriggerCheck, live_hit_check
from engine.vote_reports import out_of_sample
from storage.votes import VoteRepository

if TYPE_CHECKING:
    from strategies.model_store import ModelMeta

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
EXIT_PROMOTED, EXIT_KEPT = 0, 3
RETRAIN_NICE = 10
LIVE_COOLDOWN = timedelta(days=1)


def retrain_command(model: Path | None = None) -> list[str]:
    command = [sys.executable, str(ROOT / "main.py"), "retrain", "--refresh"]  # fetch the days since the last run
    return command + (["--model", str(model)] if model is not None else [])


@dataclass(frozen=True, slots=True)
class RetrainResult:
    reason: str            # why it ran: "weekly", a live-hit-rate line
    outcome: str           # "promoted" | "kept" | "failed"
    summary: str           # the child's last output line, or what went wrong
    exit_code: int | None  # None: timed out or could not start


def _lower_priority() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        os.nice(RETRAIN_NICE)


class Retrainer:
    def __init__(self, bus: EventBus, clock: Clock, *, command: Sequence[str], timeout: float) -> None:
        self.bus = bus
        self.clock = clock
        self.command = list(command)
        self.timeout = timeout
        self._task: asyncio.Task[RetrainResult] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._last_live_start: datetime | None = None
        self.results: list[RetrainResult] = []
        # after a promotion: load the new model into the running panel; returns what to tell the operator
        self.on_promoted: Callable[[], Awaitable[str]] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, reason: str) -> bool:
        """Start a retrain in the background; False if one is already running."""
        if self.running:
            log.info("retrain (%s) not started: one is already running", reason)
            return False
        self._task = asyncio.get_running_loop().create_task(self.run(reason), name="retrain")
        return True

    async def wait(self) -> RetrainResult | None:
        return await asyncio.shield(self._task) if self._task is not None else None

    async def run(self, reason: str) -> RetrainResult:
        log.info("retrain started (%s): %s", reason, " ".join(self.command))
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, preexec_fn=_lower_priority)
        except OSError as exc:
            return await self._finish(RetrainResult(reason, "failed", f"could not start it ({exc})", None))
        self._process = process
        try:
            out, _ = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return await self._finish(RetrainResult(reason, "failed", f"timed out after {self.timeout:.0f} s", None))
        finally:
            self._process = None
        lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
        summary = lines[-1].strip() if lines else "(no output)"
        code = process.returncode
        outcome = {EXIT_PROMOTED: "promoted", EXIT_KEPT: "kept"}.get(code if code is not None else -1, "failed")
        return await self._finish(RetrainResult(reason, outcome, summary, code))

    async def _finish(self, result: RetrainResult) -> RetrainResult:
        self.results.append(result)
        if result.outcome == "promoted":
            loaded = "The bot loads it at the next start or mode switch."
            if self.on_promoted is not None:
                try:
                    loaded = await self.on_promoted()
                except Exception as exc:  # the old voter keeps voting; the file is the operator's to check
                    log.exception("the promoted model could not be loaded into the running panel")
                    loaded = f"It could not be loaded now ({exc}); the bot keeps the model it has until a restart."
            level, text = Level.INFO, f"ML model retrained and promoted ({result.reason}): {result.summary}. {loaded}"
        elif result.outcome == "kept":
            level, text = Level.INFO, f"ML model retrained, current model kept ({result.reason}): {result.summary}"
        else:
            level, text = Level.WARNING, (
                f"ML retrain failed ({result.reason}): {result.summary} (exit {result.exit_code}). The model in use "
                "is unchanged. Check that `python main.py download` keeps DATA_DIR/binance-futures current, then "
                "run `python main.py retrain` by hand to see the error.")
        log.info("retrain %s: %s", result.outcome, result.summary)
        await self.bus.publish(Alert(time=self.clock.now(), level=level, message=text,
                                     detail={"outcome": result.outcome, "reason": result.reason}))
        return result

    async def check_live(self, repo: VoteRepository, model: Path, *, window: int, margin: float) -> TriggerCheck:
        """After outcomes were resolved: start a retrain if the ML voter's live hit rate fell below the bar."""
        meta = await asyncio.to_thread(_read_meta, model)
        oos_hit = out_of_sample(meta)[1] if meta is not None else None
        rows = await repo.resolved(kind=VoterKind.ML, limit=window)
        check = live_hit_check([r.won for r in rows], window=window, out_of_sample_hit=oos_hit, margin=margin)
        now = self.clock.now()
        cooled = self._last_live_start is None or now - self._last_live_start >= LIVE_COOLDOWN
        if check.fire and cooled and self.start(check.reason):
            self._last_live_start = now
        return check

    async def close(self) -> None:
        """On shutdown: stop a retrain in flight (the model in use is never half-replaced: see model_swap)."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()


def _read_meta(model: Path) -> ModelMeta | None:
    if not model.is_file():
        return None
    from strategies.model_store import ModelMismatch, read_meta

    try:
        return read_meta(model)
    except ModelMismatch:
        return None
