"""`sis status`: each volume's settings, its scan job's progress, its last run.

Contract: read-only. A job being run by a Scanner in this process is
reported live ("Active"); an unfinished job found on disk with no scanner
running (killed, paused, or run by another process that has since exited)
is "Pending": `sis start` resumes it. Figures of a job in another process
come from its kv mirror, a few seconds old at most.
"""

from __future__ import annotations

import os

from . import config
from .index import DedupStore
from .scanner import running


def _job(pool) -> tuple[dict | None, bool]:
    sc = running(pool)
    if sc is not None and sc.job is not None:
        return sc.job, True
    if not os.path.exists(os.path.join(pool.path, "dedup", "index.db")):
        return None, False
    store = DedupStore(pool)
    try:
        return store.meta_get("job"), False
    finally:
        store.close()


def _progress(job: dict) -> tuple[str, float]:
    ph = job.get("phase")
    if ph == "collect":
        t = job.get("total_blocks") or 0
        pct = 100.0 * job.get("done_blocks", 0) / t if t else 0.0
    elif ph == "match":
        t = job.get("rows") or 0
        pct = 100.0 * job.get("rows_done", 0) / t if t else 100.0
    elif ph == "sort":
        pct = 0.0
    else:
        pct = 100.0
    return ph or "-", round(pct, 1)


def status(pool, volume: str | None = None):
    """A dict for ``volume``, else a list of dicts for every volume."""
    job, live = _job(pool)
    vols = config.all_volumes(pool)
    if volume is not None:
        pool.volume(volume)
        vols = {volume: vols[volume]}
    out = []
    for name, rec in sorted(vols.items()):
        d = {
            "volume": name,
            "path": f"/vol/{name}",
            "state": "Enabled" if rec["enabled"] else "Disabled",
            "inline": bool(rec.get("inline")),
            "schedule": rec.get("schedule", "-"),
            "status": "Idle",
            "phase": None,
            "progress": None,
            "job": None,
            "last_run": rec.get("last_run"),
        }
        if job is not None and pool.volume(name).id in job.get("volume_ids", []):
            phase, pct = _progress(job)
            d["status"] = "Active" if live else "Pending"
            d["phase"], d["progress"] = phase, pct
            d["job"] = {k: v for k, v in job.items() if k != "work"}
        out.append(d)
    return out[0] if volume is not None else out
