"""Long operations as jobs: run in threads, report progress, survive restarts.

Contract:

* ``JobRunner.submit(kind, params)`` records a job (state ``queued``) in
  the pool's kv (scope ``jobs``) before it returns, then runs it in a worker
  thread. A job record is JSON: ``id, kind, params, state, phase, done,
  total, fraction, message, result, error, created, started, finished,
  attempts``. States: ``queued`` → ``running`` → ``done`` | ``failed`` |
  ``cancelled``; ``interrupted`` is a job the daemon stopped on shutdown
  that it will resume at the next start.
* A job kind is a function ``run(ctx) -> result`` registered with
  ``register(kind, run, resumable=...)``. It reports with
  ``ctx.progress(phase, done, total)`` (persisted at most every
  ``persist_interval`` seconds and at each phase change; the record's
  ``phases`` keeps the last ``done``/``total`` of every phase in order, so a
  client that polls slowly still sees each phase finish) and checks
  ``ctx.stopping`` between steps; it may keep resume state with
  ``ctx.save(state)`` (read back as ``ctx.state``).
* ``recover()`` (at daemon start) looks at jobs the last daemon left
  ``queued``, ``running`` or ``interrupted``: a resumable kind runs again
  (its ``ctx.state`` as saved; ``attempts`` counts the runs); any other is
  marked ``failed`` with the reason, so nothing is left pretending to run.
* ``shutdown(timeout)`` asks every running job to stop, waits for them,
  and marks what stopped early ``interrupted`` (resumable) or ``failed``.
* A job that raises ends ``failed`` with the error's message; a bug in a
  job never takes the daemon down.

Threading: every method is safe from any thread; jobs run on at most
``workers`` threads at once, the rest wait ``queued``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CoppiceError, InternalError
from .codec import to_jsonable
from .errors import JobNotCancellable, JobNotFound, ShuttingDown, UnknownJobKind

log = logging.getLogger("coppice.jobs")

SCOPE = "jobs"
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
KEEP_FINISHED = 200  # finished jobs kept for GET /jobs; older ones are pruned


class JobStopped(Exception):
    """Raised by a job (or ``ctx.check()``) when it stopped because it was asked to."""


@dataclass
class JobKind:
    name: str
    run: Callable[[JobContext], Any]
    resumable: bool = False
    description: str = ""


class JobContext:
    """What a running job sees: its params, progress reporting, stop flag."""

    def __init__(self, runner: JobRunner, record: dict):
        self.runner = runner
        self.id = record["id"]
        self.params = dict(record.get("params") or {})
        self.state = record.get("state_data")
        self.attempt = record.get("attempts", 0) + 1  # this run, counting from 1
        self._stop = threading.Event()
        self._last_persist = 0.0
        self._phase = record.get("phase")
        self._phases: dict = dict(record.get("phases") or {})

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self.runner._closing

    def check(self) -> None:
        if self.stopping:
            raise JobStopped()

    def progress(
        self,
        phase: str | None = None,
        done: float | None = None,
        total: float | None = None,
        message: str | None = None,
        **extra,
    ) -> None:
        """``extra``: more JSON fields of the record a kind reports (e.g. ``stage_totals``)."""
        changes: dict[str, Any] = dict(extra)
        if phase is not None:
            changes["phase"] = phase
        if done is not None:
            changes["done"] = done
        if total is not None:
            changes["total"] = total
        if message is not None:
            changes["message"] = message
        cur = phase if phase is not None else self._phase
        if cur is not None and (done is not None or total is not None):
            prev = self._phases.get(cur) or {}
            self._phases = {
                **self._phases,
                cur: {
                    "done": done if done is not None else prev.get("done"),
                    "total": total if total is not None else prev.get("total"),
                },
            }
            changes["phases"] = self._phases
        now = time.monotonic()
        force = phase is not None and phase != self._phase
        self._phase = phase if phase is not None else self._phase
        persist = force or now - self._last_persist >= self.runner.persist_interval
        if persist:
            self._last_persist = now
        self.runner._update(self.id, persist=persist, **changes)

    def save(self, state: Any) -> None:
        self.state = state
        self.runner._update(self.id, persist=True, state_data=to_jsonable(state))


def _fraction(rec: dict) -> float | None:
    if rec.get("state") == "done":
        return 1.0
    total, done = rec.get("total"), rec.get("done")
    if not total or done is None:
        return None
    return max(0.0, min(1.0, float(done) / float(total)))


class JobRunner:
    def __init__(self, store, workers: int = 2, persist_interval: float = 1.0):
        # Where job records persist: the Filer's records (or an engine Pool:
        # anything with kv_items, kv_put and kv_delete).
        self.store = store
        self.workers = workers
        self.persist_interval = persist_interval
        self.kinds: dict[str, JobKind] = {}
        self._lock = threading.RLock()
        self._jobs: dict[str, dict] = {}  # live view, newest progress
        self._contexts: dict[str, JobContext] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._queue: list[str] = []
        self._closing = False
        self._changed = threading.Condition(self._lock)
        for key, rec in store.kv_items(SCOPE):
            if isinstance(rec, dict) and "id" in rec:
                self._jobs[key] = rec

    # ---- kinds ------------------------------------------------------------------
    def register(
        self, kind: str, run: Callable[[JobContext], Any], resumable: bool = False, description: str = ""
    ) -> None:
        self.kinds[kind] = JobKind(kind, run, resumable, description)

    # ---- records ----------------------------------------------------------------
    def _persist(self, rec: dict) -> None:
        try:
            self.store.kv_put(SCOPE, rec["id"], rec)
        except Exception as e:  # a closed pool at shutdown must not kill a worker
            log.warning("job %s: cannot persist its state: %s", rec["id"], e)

    def _update(self, job_id: str, persist: bool = True, **changes) -> dict:
        with self._lock:
            rec = self._jobs[job_id]
            rec.update(changes)
            rec["fraction"] = _fraction(rec)
            rec["updated"] = time.time()
            snapshot = dict(rec)
            self._changed.notify_all()
        if persist:
            self._persist(snapshot)
        return snapshot

    def get(self, job_id: str) -> dict:
        with self._lock:
            rec = self._jobs.get(job_id)
            if rec is None:
                raise JobNotFound(job=job_id)
            return {k: v for k, v in rec.items() if k != "state_data"}

    def list(self, kind: str | None = None, state: str | None = None) -> list[dict]:
        with self._lock:
            recs = [
                {k: v for k, v in r.items() if k != "state_data"}
                for r in self._jobs.values()
                if (kind is None or r["kind"] == kind) and (state is None or r["state"] == state)
            ]
        return sorted(recs, key=lambda r: (r.get("created", 0), r["id"]))

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Block until the job is final (or ``interrupted``); its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                rec = self.get(job_id)
                if rec["state"] in FINAL or rec["state"] == "interrupted":
                    return rec
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return rec
                self._changed.wait(left if left is not None else 1.0)

    # ---- running ------------------------------------------------------------------
    def submit(self, kind: str, params: dict | None = None) -> dict:
        if kind not in self.kinds:
            raise UnknownJobKind(kind=kind, kinds=", ".join(sorted(self.kinds)) or "no jobs")
        if self._closing:
            raise ShuttingDown()
        now = time.time()
        rec = {
            "id": uuid.uuid4().hex[:12],
            "kind": kind,
            "params": to_jsonable(params or {}),
            "state": "queued",
            "phase": None,
            "done": None,
            "total": None,
            "fraction": None,
            "message": None,
            "result": None,
            "error": None,
            "created": now,
            "started": None,
            "finished": None,
            "updated": now,
            "attempts": 0,
            "pid": os.getpid(),
        }
        with self._lock:
            self._jobs[rec["id"]] = rec
        self._persist(rec)
        self._enqueue(rec["id"])
        self._prune()
        return self.get(rec["id"])

    def _enqueue(self, job_id: str) -> None:
        with self._lock:
            self._queue.append(job_id)
            self._pump()

    def _pump(self) -> None:
        with self._lock:
            while (
                self._queue
                and not self._closing
                and sum(t.is_alive() for t in self._threads.values()) < self.workers
            ):
                job_id = self._queue.pop(0)
                t = threading.Thread(target=self._run, args=(job_id,), name=f"job-{job_id}", daemon=True)
                self._threads[job_id] = t
                t.start()

    def _run(self, job_id: str) -> None:
        with self._lock:
            rec = self._jobs[job_id]
            kind = self.kinds[rec["kind"]]
            ctx = JobContext(self, rec)
            self._contexts[job_id] = ctx
        self._update(
            job_id,
            state="running",
            started=time.time(),
            attempts=rec.get("attempts", 0) + 1,
            pid=os.getpid(),
            error=None,
        )
        try:
            result = kind.run(ctx)
        except JobStopped:
            self._stopped(job_id, kind, ctx)
        except CoppiceError as e:
            if ctx.stopping and not ctx._stop.is_set():
                self._stopped(job_id, kind, ctx)
            else:
                self._update(
                    job_id,
                    state="failed",
                    error=str(e),
                    error_class=type(e).__name__,
                    error_code=type(e).catalogue_code(),
                    exit_code=e.exit_code,
                    finished=time.time(),
                )
        except Exception:
            log.exception("job %s (%s) crashed", job_id, kind.name)
            self._update(
                job_id,
                state="failed",
                error=f"internal error in job {job_id}: this is a bug in Coppice; "
                "the daemon's log has the details under that job id",
                error_class="InternalError",
                error_code=InternalError.catalogue_code(),
                finished=time.time(),
            )
        else:
            if ctx.stopping and isinstance(result, dict) and result.get("state") == "paused":
                self._stopped(job_id, kind, ctx)
            else:
                self._update(job_id, state="done", result=to_jsonable(result), finished=time.time())
        finally:
            with self._lock:
                self._contexts.pop(job_id, None)
                self._threads.pop(job_id, None)
                self._pump()

    def _stopped(self, job_id: str, kind: JobKind, ctx: JobContext) -> None:
        if ctx._stop.is_set():
            self._update(job_id, state="cancelled", finished=time.time(), message="stopped on request")
        elif kind.resumable:
            self._update(job_id, state="interrupted", message="daemon shut down; resumes at the next start")
        else:
            self._update(
                job_id,
                state="failed",
                finished=time.time(),
                error="interrupted: the daemon shut down before the job finished; start it again",
            )

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            rec = self.get(job_id)
            if rec["state"] == "queued" and job_id in self._queue:
                self._queue.remove(job_id)
                self._update(
                    job_id, state="cancelled", finished=time.time(), message="cancelled before it ran"
                )
                return self.get(job_id)
            ctx = self._contexts.get(job_id)
            if rec["state"] != "running" or ctx is None:
                raise JobNotCancellable(job=job_id, state=rec["state"])
            ctx._stop.set()
            return self.get(job_id)

    # ---- lifecycle ------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Resume or fail what an earlier daemon left unfinished; ids resumed."""
        resumed = []
        with self._lock:
            leftovers = [
                r
                for r in self._jobs.values()
                if r["state"] in ACTIVE + ("interrupted",)
                and r["id"] not in self._threads
                and r["id"] not in self._queue
            ]
        for rec in sorted(leftovers, key=lambda r: r.get("created", 0)):
            kind = self.kinds.get(rec["kind"])
            how = "was interrupted" if rec["state"] != "queued" else "never started"
            if kind is not None and kind.resumable:
                self._update(
                    rec["id"],
                    state="queued",
                    message=f"resumed after a daemon restart (it {how} under pid {rec.get('pid')})",
                )
                self._enqueue(rec["id"])
                resumed.append(rec["id"])
            else:
                while_ = "ran" if rec["state"] != "queued" else "waited to run"
                why = (
                    f"the daemon (pid {rec.get('pid')}) stopped while the job {while_}"
                    + ("" if kind is not None else f", and this daemon has no job kind {rec['kind']!r}")
                    + "; it cannot resume, start it again"
                )
                self._update(rec["id"], state="failed", error=why, finished=time.time())
        return resumed

    def shutdown(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._closing = True
            queued, self._queue = list(self._queue), []
            threads = list(self._threads.values())
        for job_id in queued:
            rec = self._jobs[job_id]
            if self.kinds[rec["kind"]].resumable:
                self._update(job_id, state="interrupted", message="daemon shut down before it ran")
            else:
                self._update(
                    job_id,
                    state="failed",
                    finished=time.time(),
                    error="the daemon shut down before the job ran; start it again",
                )
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.error("%s did not stop within %ss; it is marked at the next start", t.name, timeout)

    def _prune(self) -> None:
        with self._lock:
            done = sorted(
                (r for r in self._jobs.values() if r["state"] in FINAL), key=lambda r: r.get("finished") or 0
            )
            drop = done[:-KEEP_FINISHED] if len(done) > KEEP_FINISHED else []
            for r in drop:
                del self._jobs[r["id"]]
        for r in drop:
            try:
                self.store.kv_delete(SCOPE, r["id"])
            except Exception:
                pass
