"""The daemon's scheduler: runs periodic tasks on an injectable clock.

Contract: a ``Scheduler`` holds ``Task``s, each a function ``fn(now)``
(``now`` a POSIX time from the scheduler's clock) with an ``interval`` in
seconds. ``tick(now)`` runs every task that is due at ``now``; a task
that raises is logged, counted in ``status()`` and retried after
``retry`` seconds (doubling up to its interval) — a failing task never
stops the others or the scheduler. ``start()`` runs ticks in a thread
until ``stop()``; ``run_until(end)`` runs them in this thread.

Time is injected: ``clock()`` returns now and ``sleep(seconds, stop_event)``
waits. ``FakeClock`` provides both with time that moves only when slept
on, so a week of schedule runs in well under a second.

Tasks the daemon installs (``default_tasks``): the filer's snapshot
schedules (``tick(now)``, 7-mode ``snap sched`` semantics, hourly) and the
dedup schedules (``coppice.dedup.due(pool, now)``), each due volume
submitted as a dedup scan job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import CoppiceError

log = logging.getLogger("coppice.scheduler")


class FakeClock:
    """Time that moves only when someone sleeps on it (or ``advance``)."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.advance(max(seconds, 0.0))


def _real_sleep(seconds: float, stop: threading.Event | None = None) -> None:
    if stop is not None:
        stop.wait(max(seconds, 0.0))
    else:
        time.sleep(max(seconds, 0.0))


@dataclass
class Task:
    name: str
    fn: Callable[[float], object]
    interval: float = 60.0
    retry: float = 5.0
    next_run: float | None = None
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_run: float | None = None
    last_error: str | None = None
    last_result: object = field(default=None, repr=False)

    def status(self) -> dict:
        return {
            "name": self.name,
            "interval": self.interval,
            "next_run": self.next_run,
            "runs": self.runs,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_run": self.last_run,
            "last_error": self.last_error,
        }


class Scheduler:
    def __init__(
        self,
        tasks: list[Task] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float, threading.Event | None], None] = _real_sleep,
        max_sleep: float = 30.0,
    ):
        self.tasks: list[Task] = list(tasks or [])
        self.clock = clock
        self.sleep = sleep
        self.max_sleep = max_sleep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one tick at a time

    def add(self, task: Task) -> Task:
        self.tasks.append(task)
        return task

    def tick(self, now: float | None = None) -> list[str]:
        """Run every task due at ``now``; the names of those that ran."""
        now = self.clock() if now is None else now
        ran = []
        with self._lock:
            for task in self.tasks:
                if task.next_run is not None and now < task.next_run:
                    continue
                ran.append(task.name)
                task.last_run = now
                task.runs += 1
                try:
                    task.last_result = task.fn(now)
                except Exception as e:  # logged and retried: a failing task never kills the daemon
                    task.failures += 1
                    task.consecutive_failures += 1
                    task.last_error = f"{type(e).__name__}: {e}"
                    backoff = min(task.retry * 2 ** (task.consecutive_failures - 1), task.interval)
                    task.next_run = now + backoff
                    log.error(
                        "scheduled task %s failed (%d in a row), retrying in %.0fs: %s",
                        task.name,
                        task.consecutive_failures,
                        backoff,
                        task.last_error,
                        exc_info=not isinstance(e, CoppiceError),
                    )
                else:
                    task.consecutive_failures = 0
                    task.last_error = None
                    task.next_run = now + task.interval
        return ran

    def next_due(self) -> float:
        now = self.clock()
        pending = [t.next_run if t.next_run is not None else now for t in self.tasks]
        return min(pending) if pending else now + self.max_sleep

    def run_until(self, end: float | Callable[[], bool]) -> None:
        """Tick in this thread until the clock reaches ``end`` (or ``end()`` is true)."""
        done = end if callable(end) else (lambda: self.clock() >= end)
        while not done() and not self._stop.is_set():
            self.tick()
            now = self.clock()
            wait = min(max(self.next_due() - now, 0.0), self.max_sleep)
            if not callable(end):
                wait = min(wait, max(end - now, 0.0))
            if wait <= 0 and self.next_due() <= now:
                wait = 0.001  # everything just ran and is due again: let time move
            self.sleep(wait, self._stop)

    def start(self) -> Scheduler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_until(lambda: self._stop.is_set())
            except Exception:  # run_until itself never should; belt and braces
                log.exception("scheduler loop failed; restarting it")
                self.sleep(1.0, self._stop)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def status(self) -> list[dict]:
        return [t.status() for t in self.tasks]
