"""/jobs: long operations (clone split, dedup scan, scrub, later provisioning)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request

from ..auth import require_token

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_token)])

State = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]


@router.get("/jobs", summary="every job the pool remembers, oldest first")
def list_jobs(request: Request, kind: str | None = None, state: State | None = None):
    return request.app.state.jobs.list(kind=kind, state=state)


@router.get("/jobs/{job_id}", summary="one job: state, phase, done/total, fraction, result or error")
def get_job(request: Request, job_id: str, wait: float = 0.0):
    jobs = request.app.state.jobs
    if wait > 0:
        return jobs.wait(job_id, timeout=min(wait, 30.0))
    return jobs.get(job_id)


@router.delete("/jobs/{job_id}", summary="stop a queued or running job")
def cancel_job(request: Request, job_id: str):
    return request.app.state.jobs.cancel(job_id)
