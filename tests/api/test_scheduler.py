"""The scheduler on a fake clock: a week of `snap sched` in well under a second,
and a failing task that is logged and retried without stopping anything."""

from __future__ import annotations

import datetime as dt
import threading
import time

from coppice.api.scheduler import FakeClock, Scheduler, Task


def test_failing_task_is_retried_and_never_stops_the_others():
    # a task that fails twice is retried with backoff; the other task keeps its cadence
    clock = FakeClock(0)
    calls = {"flaky": [], "steady": []}

    def flaky(now):
        calls["flaky"].append(now)
        if len(calls["flaky"]) <= 2:
            raise RuntimeError("disk hiccup")

    sched = Scheduler(
        [
            Task("flaky", flaky, interval=60, retry=5),
            Task("steady", lambda now: calls["steady"].append(now), interval=60),
        ],
        clock=clock,
        sleep=clock.sleep,
    )
    sched.run_until(600)
    assert calls["flaky"][:3] == [0, 5, 15]  # retried after 5 s, then 10 s
    assert len(calls["steady"]) == 10  # every minute, undisturbed
    st = {s["name"]: s for s in sched.status()}
    assert st["flaky"]["failures"] == 2 and st["flaky"]["consecutive_failures"] == 0
    assert st["flaky"]["last_error"] is None


def test_scheduler_thread_survives_a_task_that_always_fails():
    # in its thread, a task that always raises does not end the loop
    clock = FakeClock(0)
    hits = []
    four = threading.Event()

    def boom(now):
        hits.append(now)
        if len(hits) >= 4:
            four.set()
        raise ValueError("always")

    sched = Scheduler(
        [Task("boom", boom, interval=10, retry=1)],
        clock=clock,
        sleep=lambda s, stop=None: (clock.advance(s), time.sleep(0.001)),
    )
    sched.start()
    assert four.wait(30), "the loop stopped after a failing task"
    sched.stop()
    assert len(hits) > 3 and sched.status()[0]["failures"] == len(hits)


def test_a_week_of_snapshot_schedule_in_a_second(pool_dir):
    # `snap sched v 2 6 8@8,12,16,20` run hourly for a week keeps 2 weekly, 6 nightly, 8 hourly
    from coppice.daemon import default_tasks
    from coppice.filer import Filer

    start = dt.datetime(2026, 1, 4, 0, 30)  # a Sunday, half past midnight
    clock = FakeClock(start.timestamp())
    f = Filer.create(pool_dir, clock=lambda: dt.datetime.fromtimestamp(clock()))
    try:
        f.vol_create("v", "1g")
        f.snap_sched("v", "2 6 8@8,12,16,20")
        tasks = [t for t in default_tasks(f, jobs=None, interval=3600) if t.name == "snap_sched"]
        sched = Scheduler(tasks, clock=clock, sleep=clock.sleep)
        sched.run_until(start.timestamp() + 7 * 86400 + 3600)
        # The week passed on the injected clock, not the wall clock.
        assert clock() >= start.timestamp() + 7 * 86400
        names = {s["name"] for s in f.snap_list("v")}
        assert tasks[0].failures == 0, tasks[0].last_error
    finally:
        f.close()
    assert {n for n in names if n.startswith("weekly.")} == {"weekly.0", "weekly.1"}
    assert {n for n in names if n.startswith("nightly.")} == {f"nightly.{i}" for i in range(6)}
    assert {n for n in names if n.startswith("hourly.")} == {f"hourly.{i}" for i in range(8)}
