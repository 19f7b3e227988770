"""The watchdog's clock logic (the process-level exit is pinned by tests/test_ops_process.py)."""

from __future__ import annotations

import threading

import pytest

from app.watchdog import Watchdog


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stalls_only_after_the_limit_without_a_monitor_tick():
    clock = Monotonic()
    dog = Watchdog(30, monotonic=clock, on_stall=lambda age: None)
    clock.now += 29
    assert dog.stalled_for() is None
    dog.job_finished("scan", 1.0)  # scans are no sign of the monitor's life
    clock.now += 2
    assert dog.stalled_for() == 31
    dog.job_finished("monitor", 0.5)
    clock.now += 30
    assert dog.stalled_for() is None


def test_the_thread_calls_on_stall_once_and_stops():
    clock = Monotonic()
    fired: list[float] = []
    done = threading.Event()

    def on_stall(age: float) -> None:
        fired.append(age)
        done.set()

    dog = Watchdog(10, monotonic=clock, on_stall=on_stall, check_every=0.01).start()
    try:
        clock.now += 11
        assert done.wait(5)
    finally:
        dog.stop()
    assert fired == [11]


def test_a_zero_limit_is_refused():
    with pytest.raises(ValueError):
        Watchdog(0)
