"""Jobs: progress persisted in the pool, resumed or failed with a reason after a restart."""

from __future__ import annotations

import threading
import time

import pytest

from coppice.api.jobs import JobRunner
from coppice.engine import Pool


def _slow(gate: threading.Event, reached: threading.Event | None = None):
    # counts to 10; its first run holds at 3 (``reached`` set) until ``gate`` or a stop
    def run(ctx):
        start = (ctx.state or {}).get("i", 0)
        for i in range(start, 10):
            ctx.progress("work", i, 10)
            ctx.save({"i": i})
            if i == 3 and ctx.attempt == 1:
                if reached is not None:
                    reached.set()
                while not gate.wait(0.02) and not ctx.stopping:
                    pass
            ctx.check()
        return {"from": start}

    return run


def test_progress_is_persisted_and_visible(pool):
    # a job's phase, done/total and fraction are readable while it runs, and in the pool's kv
    gate, at3 = threading.Event(), threading.Event()
    jr = JobRunner(pool, persist_interval=0)
    jr.register("slow", _slow(gate, at3), resumable=True)
    job = jr.submit("slow", {"x": 1})
    assert at3.wait(30)
    rec = jr.get(job["id"])
    assert rec["state"] == "running" and rec["phase"] == "work" and rec["fraction"] == 0.3
    assert pool.kv_get("jobs", job["id"])["done"] == 3
    gate.set()
    assert jr.wait(job["id"], 10)["state"] == "done"
    assert pool.kv_get("jobs", job["id"])["state"] == "done"


def test_restart_resumes_resumable_and_fails_the_rest(pool_dir):
    # a daemon stopping mid-job: the resumable job continues from its saved state at the next
    # start; a non-resumable one is marked failed with a reason
    pool = Pool.create(pool_dir)
    gate, a_at3, b_at3 = threading.Event(), threading.Event(), threading.Event()
    jr = JobRunner(pool, persist_interval=0)
    jr.register("slow", _slow(gate, a_at3), resumable=True)
    jr.register("once", _slow(gate, b_at3), resumable=False)
    a = jr.submit("slow")
    b = jr.submit("once")
    assert a_at3.wait(30) and b_at3.wait(30)
    jr.shutdown(timeout=10)  # asks the jobs to stop; they stop at ctx.check()
    gate.set()
    assert jr.get(a["id"])["state"] == "interrupted"
    assert jr.get(b["id"])["state"] == "failed"
    pool.close()

    pool = Pool.open(pool_dir)
    try:
        jr2 = JobRunner(pool, persist_interval=0)
        jr2.register("slow", _slow(gate), resumable=True)
        jr2.register("once", _slow(gate), resumable=False)
        assert jr2.recover() == [a["id"]]
        done = jr2.wait(a["id"], 10)
        assert done["state"] == "done" and done["attempts"] == 2 and done["result"] == {"from": 3}
        assert "resumed after a daemon restart" in done["message"]
        assert "shut down" in jr2.get(b["id"])["error"]
    finally:
        pool.close()


def test_job_left_running_by_a_killed_daemon_is_failed_with_reason(pool):
    # a record still 'running' from a dead daemon (kill -9) is not left pretending to run
    pool.kv_put(
        "jobs",
        "deadbeef",
        {"id": "deadbeef", "kind": "scrub", "state": "running", "params": {}, "pid": 999999, "created": 1.0},
    )
    jr = JobRunner(pool)
    jr.register("scrub", lambda ctx: None, resumable=False)
    assert jr.recover() == []
    rec = jr.get("deadbeef")
    assert rec["state"] == "failed" and "pid 999999" in rec["error"] and "start it again" in rec["error"]


@pytest.mark.backends("native", "rbd")
def test_clone_split_runs_as_a_job_over_http(served):
    # POST /clones/{vol}/split answers 202 with a job; /jobs/{id} reports it done
    h = served.http
    h.post("/volumes", json={"name": "v", "size": "1g"})
    h.post("/luns", json={"path": "/vol/v/lun0", "size": "4m"})
    h.post("/volumes/v/snapshots", json={"name": "s"})
    assert h.post("/clones", json={"new": "c", "parent": "v", "snap": "s"}).status_code == 201
    r = h.post("/clones/c/split")
    assert r.status_code == 202 and r.json()["kind"] == "clone_split"
    job = h.get(f"/jobs/{r.json()['id']}", params={"wait": 20}).json()
    assert job["state"] == "done" and job["fraction"] == 1.0, job
    assert h.get("/clones/c/split").json()["clone"] is False
    # splitting what is not a clone is refused at once, not as a failed job
    r = h.post("/clones/v/split")
    assert r.status_code == 400 and r.json()["error"] == "NotAClone"
