"""`coppice sis ...`: deduplication settings, scans and status.

Contract: a thin Typer app named ``app`` (main.py mounts it as ``sis``);
each command parses, calls the Dedup façade (``common.dedup()``: the
daemon's when `coppice serve` owns the pool, else the pool's own) and
prints. Errors and the pool location are handled as in every other
command group (``common``); ``--pool`` is also taken after the command.
Read commands take ``--json``.

    coppice sis on|off /vol/NAME
    coppice sis config [-i on|off] [-s SCHEDULE] [/vol/NAME] [--json]
    coppice sis start [-s] [/vol/NAME] [--json]
    coppice sis status [-l] [/vol/NAME] [--json]
"""

from __future__ import annotations

import datetime as _dt

import typer

from ..errors import InvalidArgument
from .common import STATE, command, console, dedup, emit_json

app = typer.Typer(
    name="sis",
    help="Deduplication (single-instance storage): on/off, inline, scans, status.",
    no_args_is_help=True,
)

PoolOpt = typer.Option(None, "--pool", envvar="COPPICE_POOL", help="Pool directory.")


def _use_pool(pool: str | None) -> None:
    if pool is not None:
        STATE.pool = pool


def vol_name(path: str) -> str:
    """'/vol/NAME' or 'NAME' -> 'NAME'."""
    p = path.strip()
    if p.startswith("/vol/"):
        p = p[5:]
    p = p.strip("/")
    if not p or "/" in p:
        raise InvalidArgument(detail=f"{path!r} is not a volume path: use /vol/NAME")
    return p


def _ts(t) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _set_enabled(path, pool, on: bool):
    _use_pool(pool)
    name = vol_name(path)
    with dedup() as d:
        d.sis_configure(name, enabled=on)
    typer.echo(f"SIS {'enabled' if on else 'disabled'} on /vol/{name}.")


@app.command("on")
@command
def sis_on(path: str = typer.Argument(..., help="/vol/NAME"), pool: str | None = PoolOpt):
    """Enable deduplication on a volume (post-process scans)."""
    _set_enabled(path, pool, True)


@app.command("off")
@command
def sis_off(path: str = typer.Argument(..., help="/vol/NAME"), pool: str | None = PoolOpt):
    """Disable deduplication (and inline mode) on a volume. Shared blocks stay shared."""
    _set_enabled(path, pool, False)


@app.command("config")
@command
def sis_config(
    path: str | None = typer.Argument(None, help="/vol/NAME (all volumes when omitted)"),
    inline: str | None = typer.Option(None, "-i", "--inline", help="on|off"),
    schedule: str | None = typer.Option(
        None, "-s", "--schedule", help="day_list[@hour_list], e.g. sun-sat@0; - for none"
    ),
    as_json: bool = typer.Option(False, "--json"),
    pool: str | None = PoolOpt,
):
    """Set inline mode or the scan schedule of a volume; without options, show the settings."""
    from rich.table import Table

    _use_pool(pool)
    name = vol_name(path) if path else None
    if (inline is not None or schedule is not None) and name is None:
        raise InvalidArgument(detail="give the volume to configure: coppice sis config -i on /vol/NAME")
    if inline is not None and inline.lower() not in ("on", "off"):
        raise InvalidArgument(detail=f"-i takes on or off, not {inline!r}")
    with dedup() as d:
        if name is None:
            recs = d.sis_settings()
        elif inline is None and schedule is None:
            recs = {name: d.sis_volume_settings(name)}
        else:
            recs = {name: d.sis_configure(name, None, inline.lower() == "on" if inline else None, schedule)}
    rows = [
        {"path": f"/vol/{n}", "enabled": r["enabled"], "inline": r["inline"], "schedule": r["schedule"]}
        for n, r in sorted(recs.items())
    ]
    if as_json:
        return emit_json(rows if name is None else rows[0])
    t = Table("Path", "State", "Inline", "Schedule")
    for r in rows:
        t.add_row(
            r["path"],
            "Enabled" if r["enabled"] else "Disabled",
            "on" if r["inline"] else "off",
            r["schedule"],
        )
    console().print(t)


@app.command("start")
@command
def sis_start(
    path: str | None = typer.Argument(None, help="/vol/NAME (all sis volumes when omitted)"),
    scan_all: bool = typer.Option(
        False, "-s", "--scan-all", help="Scan all existing data, not only new blocks."
    ),
    as_json: bool = typer.Option(False, "--json"),
    pool: str | None = PoolOpt,
):
    """Run a deduplication scan now (resumes an interrupted one first)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    _use_pool(pool)
    vols = [vol_name(path)] if path else None
    labels = {"collect": "collecting fingerprints", "sort": "sorting", "match": "verifying and sharing"}
    err = Console(stderr=True)
    with dedup() as d:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=as_json,
            transient=False,
        ) as prog:
            tasks: dict[str, int] = {}

            def progress(phase, done, total):
                if phase == "done":
                    return
                if phase not in tasks:
                    tasks[phase] = prog.add_task(labels.get(phase, phase), total=max(total, 1))
                prog.update(tasks[phase], completed=done, total=max(total, 1))

            pending = d.sis_pending()
            if pending and not as_json:
                err.print(
                    f"resuming interrupted scan of {', '.join(pending['volumes']) or '-'} "
                    f"(phase {pending['phase']})"
                )
            try:
                job = d.sis_scan(vols, scan_all, progress)
            except KeyboardInterrupt:
                err.print("interrupted: the scan is paused; `coppice sis start` resumes it")
                raise typer.Exit(130) from None
        block_size = d.block_size
    c = job["counters"]
    if as_json:
        return emit_json(job)
    bs_mib = lambda n: f"{n * block_size / 2**20:.1f} MiB"  # noqa: E731
    console().print(
        f"Scan of {', '.join('/vol/' + v for v in job['volumes']) or 'no volumes'} {job['state']}: "
        f"{c['scanned']} blocks scanned ({c['skipped']} unchanged skipped), "
        f"{c['shared']} shared ({bs_mib(c['shared'])} freed at most), "
        f"{c['compared']} byte comparisons, {c['collisions']} fingerprint collisions."
    )


@app.command("status")
@command
def sis_status(
    path: str | None = typer.Argument(None, help="/vol/NAME (all volumes when omitted)"),
    long: bool = typer.Option(False, "-l", "--long", help="All details."),
    as_json: bool = typer.Option(False, "--json"),
    pool: str | None = PoolOpt,
):
    """State, progress, last run, blocks scanned and shared."""
    from rich.table import Table

    _use_pool(pool)
    name = vol_name(path) if path else None
    with dedup() as d:
        st = d.sis_status(name)
    rows = [st] if isinstance(st, dict) else st
    if as_json:
        return emit_json(st)
    if not long:
        t = Table("Path", "State", "Status", "Progress", "Last run")
        for r in rows:
            prog = (
                f"{r['phase']} {r['progress']}%"
                if r["phase"]
                else "Idle for " + (_ago(r["last_run"]["finished"]) if r["last_run"] else "ever")
            )
            t.add_row(r["path"], r["state"], r["status"], prog, _ts((r["last_run"] or {}).get("finished")))
        console().print(t)
        return
    for r in rows:
        lr = r["last_run"] or {}
        job = r["job"] or {}
        c = (job.get("counters") if job else None) or {}
        lines = [
            ("Path", r["path"]),
            ("State", r["state"]),
            ("Inline", "on" if r["inline"] else "off"),
            ("Schedule", r["schedule"]),
            ("Status", r["status"]),
            ("Progress", f"{r['phase']} {r['progress']}%" if r["phase"] else "-"),
            ("Job blocks scanned", c.get("scanned", "-")),
            ("Job blocks shared", c.get("shared", "-")),
            ("Last run start", _ts(lr.get("started"))),
            ("Last run end", _ts(lr.get("finished"))),
            ("Last run type", ("full (-s)" if lr.get("full") else "new blocks") if lr else "-"),
            ("Last blocks scanned", lr.get("scanned", "-")),
            ("Last blocks skipped", lr.get("skipped", "-")),
            ("Last blocks shared", lr.get("shared", "-")),
            ("Last byte comparisons", lr.get("compared", "-")),
            ("Last collisions", lr.get("collisions", "-")),
            ("Last refused (rewritten)", lr.get("refused", "-")),
        ]
        for k, v in lines:
            typer.echo(f"{k:>26}: {v}")
        typer.echo()


def _ago(t) -> str:
    import time

    s = int(time.time() - t)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
