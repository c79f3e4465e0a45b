"""/dedup: sis settings, savings, status and scans (scans are jobs).

The scan job resumes after a daemon restart: the dedup scanner keeps its
own cursor, and the façade's ``sis_scan(resume=True)`` finishes an
unfinished scan first.
"""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Text, build_router


class VolumeQuery(Model):
    volume: Name | None = None


class SisConfig(Model):
    enabled: bool | None = None
    inline: bool | None = None
    schedule: Text | None = Field(None, description="day_list[@hour_list], e.g. sun-sat@0; - for none")


class ScanStart(Model):
    volumes: list[Name] | None = Field(None, max_length=1024, description="default: every sis-enabled volume")
    full: bool = Field(False, description="rescan everything, not only new blocks (`sis start -s`)")


router = build_router(
    "dedup",
    {
        "sis_status": VolumeQuery,
        "sis_savings": VolumeQuery,
        "sis_configure": SisConfig,
        "sis_scan": ScanStart,
    },
)


def run_scan(dedup):
    """The dedup_scan job kind: a scan that pauses when the job is asked to stop."""

    def run(ctx):
        result = dedup.sis_scan(
            ctx.params.get("volumes"),
            bool(ctx.params.get("full")),
            progress=ctx.progress,
            should_stop=lambda: ctx.stopping,
            resume=ctx.attempt > 1,
        )
        if isinstance(result, dict) and result.get("state") == "paused":
            ctx.check()
        return result

    return run
