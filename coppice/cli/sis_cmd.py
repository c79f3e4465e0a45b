"""`coppice sis ...`: deduplication settings, scans and status.

Contract: a thin Typer app named ``app`` (main.py mounts it as ``sis``);
each command parses, calls ``coppice.dedup``, prints. The pool comes from
``--pool`` / ``$COPPICE_POOL``, else from ``ctx.obj`` (a Pool, a path, a
dict with a 'pool' entry, or an object with a ``pool`` attribute or an
``open_pool()`` method). A CoppiceError prints one line and exits with its
``exit_code``. Read commands take ``--json``.

    coppice sis on|off /vol/NAME
    coppice sis config [-i on|off] [-s SCHEDULE] [/vol/NAME] [--json]
    coppice sis start [-s] [/vol/NAME] [--json]
    coppice sis status [-l] [/vol/NAME] [--json]
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import CoppiceError, InvalidArgument

app = typer.Typer(name="sis", help="Deduplication (single-instance storage): on/off, inline, scans, status.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)

PoolOpt = typer.Option(None, "--pool", envvar="COPPICE_POOL", help="Pool directory.")


def vol_name(path: str) -> str:
    """'/vol/NAME' or 'NAME' -> 'NAME'."""
    p = path.strip()
    if p.startswith("/vol/"):
        p = p[5:]
    p = p.strip("/")
    if not p or "/" in p:
        raise InvalidArgument(detail=f"{path!r} is not a volume path: use /vol/NAME")
    return p


@contextlib.contextmanager
def _pool(ctx: typer.Context, path: Optional[str]):
    from ..engine import Pool
    obj = ctx.obj if ctx is not None else None
    if path is None and obj is not None:
        cand = obj.get("pool") if isinstance(obj, dict) else obj
        if hasattr(cand, "pool") and not hasattr(cand, "iter_blocks"):
            cand = cand.pool
        if hasattr(cand, "open_pool"):
            cand = cand.open_pool()
        if hasattr(cand, "iter_blocks"):
            yield cand   # owned by whoever put it there
            return
        if isinstance(cand, (str, os.PathLike)):
            path = os.fspath(cand)
    if path is None:
        raise InvalidArgument(detail="no pool given: pass --pool DIR or set COPPICE_POOL")
    pool = Pool.open(path, holder=f"coppice sis (pid {os.getpid()})")
    try:
        yield pool
    finally:
        pool.close()


def _fail(e: CoppiceError):
    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
    raise typer.Exit(getattr(e, "exit_code", 1))


def _ts(t) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _set_enabled(ctx, path, pool_path, on: bool):
    from .. import dedup
    try:
        with _pool(ctx, pool_path) as pool:
            name = vol_name(path)
            dedup.config.set_enabled(pool, name, on)
    except CoppiceError as e:
        _fail(e)
    console.print(f"SIS {'enabled' if on else 'disabled'} on /vol/{name}.")


@app.command("on")
def sis_on(ctx: typer.Context, path: str = typer.Argument(..., help="/vol/NAME"), pool: Optional[str] = PoolOpt):
    """Enable deduplication on a volume (post-process scans)."""
    _set_enabled(ctx, path, pool, True)


@app.command("off")
def sis_off(ctx: typer.Context, path: str = typer.Argument(..., help="/vol/NAME"), pool: Optional[str] = PoolOpt):
    """Disable deduplication (and inline mode) on a volume. Shared blocks stay shared."""
    _set_enabled(ctx, path, pool, False)


@app.command("config")
def sis_config(ctx: typer.Context,
               path: Optional[str] = typer.Argument(None, help="/vol/NAME (all volumes when omitted)"),
               inline: Optional[str] = typer.Option(None, "-i", "--inline", help="on|off"),
               schedule: Optional[str] = typer.Option(None, "-s", "--schedule",
                                                      help="day_list[@hour_list], e.g. sun-sat@0; - for none"),
               as_json: bool = typer.Option(False, "--json"),
               pool: Optional[str] = PoolOpt):
    """Set inline mode or the scan schedule of a volume; without options, show the settings."""
    from .. import dedup
    try:
        with _pool(ctx, pool) as p:
            name = vol_name(path) if path else None
            if (inline is not None or schedule is not None) and name is None:
                raise InvalidArgument(detail="give the volume to configure: coppice sis config -i on /vol/NAME")
            if inline is not None:
                if inline.lower() not in ("on", "off"):
                    raise InvalidArgument(detail=f"-i takes on or off, not {inline!r}")
                dedup.config.set_inline(p, name, inline.lower() == "on")
            if schedule is not None:
                dedup.config.set_schedule(p, name, schedule)
            recs = dedup.config.all_volumes(p)
            if name is not None:
                p.volume(name)
                recs = {name: recs[name]}
    except CoppiceError as e:
        _fail(e)
    rows = [{"path": f"/vol/{n}", "enabled": r["enabled"], "inline": r["inline"], "schedule": r["schedule"]}
            for n, r in sorted(recs.items())]
    if as_json:
        print(json.dumps(rows if name is None else rows[0], indent=2))
        return
    t = Table("Path", "State", "Inline", "Schedule")
    for r in rows:
        t.add_row(r["path"], "Enabled" if r["enabled"] else "Disabled", "on" if r["inline"] else "off",
                  r["schedule"])
    console.print(t)


@app.command("start")
def sis_start(ctx: typer.Context,
              path: Optional[str] = typer.Argument(None, help="/vol/NAME (all sis volumes when omitted)"),
              scan_all: bool = typer.Option(False, "-s", "--scan-all", help="Scan all existing data, not only new blocks."),
              as_json: bool = typer.Option(False, "--json"),
              pool: Optional[str] = PoolOpt):
    """Run a deduplication scan now (resumes an interrupted one first)."""
    from .. import dedup
    try:
        with _pool(ctx, pool) as p:
            vols = [vol_name(path)] if path else None
            labels = {"collect": "collecting fingerprints", "sort": "sorting", "match": "verifying and sharing",
                      "done": "done"}
            with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                          TimeElapsedColumn(), console=err, disable=as_json, transient=False) as prog:
                tasks: dict[str, int] = {}

                def progress(phase, done, total):
                    if phase == "done":
                        return
                    if phase not in tasks:
                        tasks[phase] = prog.add_task(labels.get(phase, phase), total=max(total, 1))
                    prog.update(tasks[phase], completed=done, total=max(total, 1))

                sc = dedup.Scanner(p, progress=progress)
                pending = sc.pending()
                if pending and pending.get("state") != "done" and not as_json:
                    err.print(f"resuming interrupted scan of {', '.join(pending['volumes']) or '-'} "
                              f"(phase {pending['phase']})")
                try:
                    job = sc.start(vols, full=scan_all)
                except KeyboardInterrupt:
                    err.print("interrupted: the scan is paused; `coppice sis start` resumes it")
                    raise typer.Exit(130)
    except CoppiceError as e:
        _fail(e)
    c = job["counters"]
    if as_json:
        print(json.dumps({k: v for k, v in job.items() if k != "work"}, indent=2))
        return
    bs_mib = lambda n: f"{n * p.block_size / 2**20:.1f} MiB"  # noqa: E731
    console.print(f"Scan of {', '.join('/vol/' + v for v in job['volumes']) or 'no volumes'} {job['state']}: "
                  f"{c['scanned']} blocks scanned ({c['skipped']} unchanged skipped), "
                  f"{c['shared']} shared ({bs_mib(c['shared'])} freed at most), "
                  f"{c['compared']} byte comparisons, {c['collisions']} fingerprint collisions.")


@app.command("status")
def sis_status(ctx: typer.Context,
               path: Optional[str] = typer.Argument(None, help="/vol/NAME (all volumes when omitted)"),
               long: bool = typer.Option(False, "-l", "--long", help="All details."),
               as_json: bool = typer.Option(False, "--json"),
               pool: Optional[str] = PoolOpt):
    """State, progress, last run, blocks scanned and shared."""
    from .. import dedup
    try:
        with _pool(ctx, pool) as p:
            st = dedup.status(p, vol_name(path) if path else None)
    except CoppiceError as e:
        _fail(e)
    rows = [st] if isinstance(st, dict) else st
    if as_json:
        print(json.dumps(st, indent=2))
        return
    if not long:
        t = Table("Path", "State", "Status", "Progress", "Last run")
        for r in rows:
            prog = f"{r['phase']} {r['progress']}%" if r["phase"] else "Idle for " + (
                _ago(r["last_run"]["finished"]) if r["last_run"] else "ever")
            t.add_row(r["path"], r["state"], r["status"], prog, _ts((r["last_run"] or {}).get("finished")))
        console.print(t)
        return
    for r in rows:
        lr = r["last_run"] or {}
        job = r["job"] or {}
        c = (job.get("counters") if job else None) or {}
        lines = [("Path", r["path"]), ("State", r["state"]), ("Inline", "on" if r["inline"] else "off"),
                 ("Schedule", r["schedule"]), ("Status", r["status"]),
                 ("Progress", f"{r['phase']} {r['progress']}%" if r["phase"] else "-"),
                 ("Job blocks scanned", c.get("scanned", "-")), ("Job blocks shared", c.get("shared", "-")),
                 ("Last run start", _ts(lr.get("started"))), ("Last run end", _ts(lr.get("finished"))),
                 ("Last run type", ("full (-s)" if lr.get("full") else "new blocks") if lr else "-"),
                 ("Last blocks scanned", lr.get("scanned", "-")), ("Last blocks skipped", lr.get("skipped", "-")),
                 ("Last blocks shared", lr.get("shared", "-")), ("Last byte comparisons", lr.get("compared", "-")),
                 ("Last collisions", lr.get("collisions", "-")), ("Last refused (rewritten)", lr.get("refused", "-"))]
        for k, v in lines:
            console.print(f"{k:>26}: {v}", highlight=False)
        console.print()


def _ago(t) -> str:
    import time
    s = int(time.time() - t)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
