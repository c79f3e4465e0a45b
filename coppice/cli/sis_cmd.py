"""`coppice sis ...`: deduplication settings, scans and status.

Contract: a thin Typer app named ``app`` (main.py mounts it as ``sis``);
each command parses, calls ``coppice.dedup`` (``_Local``) or, when
`coppice serve` owns the pool (``coppice.client.connect``), the daemon's
/dedup API (``_Remote``: a scan is a daemon job followed with the same
progress bar), and prints the same either way. The pool comes from
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

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import CoppiceError, InvalidArgument

app = typer.Typer(
    name="sis",
    help="Deduplication (single-instance storage): on/off, inline, scans, status.",
    no_args_is_help=True,
)
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


class _Local:
    """The pool opened in this process (no daemon serves it)."""

    remote = False

    def __init__(self, pool):
        self.pool = pool
        self.block_size = pool.block_size

    def set_enabled(self, name: str, on: bool) -> None:
        from .. import dedup

        dedup.config.set_enabled(self.pool, name, on)

    def configure(self, name: str | None, inline: bool | None, schedule: str | None) -> dict:
        from .. import dedup

        if inline is not None:
            dedup.config.set_inline(self.pool, name, inline)
        if schedule is not None:
            dedup.config.set_schedule(self.pool, name, schedule)
        recs = dedup.config.all_volumes(self.pool)
        if name is not None:
            self.pool.volume(name)
            recs = {name: recs[name]}
        return recs

    def status(self, name: str | None):
        from .. import dedup

        return dedup.status(self.pool, name)

    def pending(self) -> dict | None:
        from .. import dedup

        return dedup.Scanner(self.pool).pending()

    def scan(self, vols, full: bool, progress) -> dict:
        from .. import dedup

        return dedup.Scanner(self.pool, progress=progress).start(vols, full=full)


class _Remote:
    """The daemon that owns the pool (`coppice serve`), over its /dedup API:
    the same calls, results and errors as ``_Local``; a scan is a daemon job."""

    remote = True

    def __init__(self, rf):
        self.rf = rf
        self._bs = None

    @property
    def block_size(self) -> int:
        if self._bs is None:
            self._bs = self.rf.pool_info()["block_size"]
        return self._bs

    def _vol(self, name: str) -> str:
        from ..client import _segment

        return "/dedup/volumes/" + _segment(name, "volume")

    def set_enabled(self, name: str, on: bool) -> None:
        self.rf.request("PUT", self._vol(name), json={"enabled": on})

    def configure(self, name: str | None, inline: bool | None, schedule: str | None) -> dict:
        if inline is not None or schedule is not None:
            body = {k: v for k, v in (("inline", inline), ("schedule", schedule)) if v is not None}
            self.rf.request("PUT", self._vol(name), json=body)
        recs = self.rf.request("GET", "/dedup/volumes")
        if name is not None:
            self.rf.request("GET", self._vol(name))  # VolumeNotFound, as locally
            recs = {name: recs[name]}
        return recs

    def status(self, name: str | None):
        return self.rf.request("GET", "/dedup", params={"volume": name})

    def pending(self) -> dict | None:
        return self.rf.request("GET", "/dedup/scans/pending").get("pending")

    def scan(self, vols, full: bool, progress) -> dict:
        job = self.rf.request("POST", "/dedup/scans", json={"volumes": vols, "full": full})
        rec = job
        try:
            for rec in self.rf.follow(job):
                for phase, p in (rec.get("phases") or {}).items():  # every phase, even one we polled past
                    if p.get("total") is not None:
                        progress(phase, p.get("done") or 0, p["total"])
        except KeyboardInterrupt:
            # A local scan pauses on Ctrl-C; through the daemon, stop its job (it pauses the same way).
            try:
                self.rf.request("DELETE", f"/jobs/{job['id']}")
            except CoppiceError:
                pass
            raise
        if rec["state"] != "done":  # stopped by someone else or by a daemon shutdown: paused, resumable
            raise KeyboardInterrupt
        return rec["result"]


@contextlib.contextmanager
def _pool(ctx: typer.Context, path: str | None):
    """The pool to work on: the daemon serving it when one runs, else the pool itself."""
    from ..engine import Pool

    obj = ctx.obj if ctx is not None else None
    if path is None and obj is not None:
        cand = obj.get("pool") if isinstance(obj, dict) else obj
        if hasattr(cand, "pool") and not hasattr(cand, "iter_blocks"):
            cand = cand.pool
        if hasattr(cand, "open_pool"):
            cand = cand.open_pool()
        if hasattr(cand, "iter_blocks"):
            yield _Local(cand)  # owned by whoever put it there
            return
        if isinstance(cand, (str, os.PathLike)):
            path = os.fspath(cand)
    if path is None:
        raise InvalidArgument(detail="no pool given: pass --pool DIR or set COPPICE_POOL")
    from ..client import connect

    remote = connect(path)
    if remote is not None:
        try:
            yield _Remote(remote)
        finally:
            remote.close()
        return
    pool = Pool.open(path, holder=f"coppice sis (pid {os.getpid()})")
    try:
        yield _Local(pool)
    finally:
        pool.close()


def _fail(e: CoppiceError):
    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
    raise typer.Exit(getattr(e, "exit_code", 1))


def _ts(t) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _set_enabled(ctx, path, pool_path, on: bool):
    try:
        with _pool(ctx, pool_path) as be:
            name = vol_name(path)
            be.set_enabled(name, on)
    except CoppiceError as e:
        _fail(e)
    console.print(f"SIS {'enabled' if on else 'disabled'} on /vol/{name}.")


@app.command("on")
def sis_on(ctx: typer.Context, path: str = typer.Argument(..., help="/vol/NAME"), pool: str | None = PoolOpt):
    """Enable deduplication on a volume (post-process scans)."""
    _set_enabled(ctx, path, pool, True)


@app.command("off")
def sis_off(
    ctx: typer.Context, path: str = typer.Argument(..., help="/vol/NAME"), pool: str | None = PoolOpt
):
    """Disable deduplication (and inline mode) on a volume. Shared blocks stay shared."""
    _set_enabled(ctx, path, pool, False)


@app.command("config")
def sis_config(
    ctx: typer.Context,
    path: str | None = typer.Argument(None, help="/vol/NAME (all volumes when omitted)"),
    inline: str | None = typer.Option(None, "-i", "--inline", help="on|off"),
    schedule: str | None = typer.Option(
        None, "-s", "--schedule", help="day_list[@hour_list], e.g. sun-sat@0; - for none"
    ),
    as_json: bool = typer.Option(False, "--json"),
    pool: str | None = PoolOpt,
):
    """Set inline mode or the scan schedule of a volume; without options, show the settings."""
    try:
        with _pool(ctx, pool) as be:
            name = vol_name(path) if path else None
            if (inline is not None or schedule is not None) and name is None:
                raise InvalidArgument(
                    detail="give the volume to configure: coppice sis config -i on /vol/NAME"
                )
            if inline is not None and inline.lower() not in ("on", "off"):
                raise InvalidArgument(detail=f"-i takes on or off, not {inline!r}")
            recs = be.configure(name, None if inline is None else inline.lower() == "on", schedule)
    except CoppiceError as e:
        _fail(e)
    rows = [
        {"path": f"/vol/{n}", "enabled": r["enabled"], "inline": r["inline"], "schedule": r["schedule"]}
        for n, r in sorted(recs.items())
    ]
    if as_json:
        print(json.dumps(rows if name is None else rows[0], indent=2))
        return
    t = Table("Path", "State", "Inline", "Schedule")
    for r in rows:
        t.add_row(
            r["path"],
            "Enabled" if r["enabled"] else "Disabled",
            "on" if r["inline"] else "off",
            r["schedule"],
        )
    console.print(t)


@app.command("start")
def sis_start(
    ctx: typer.Context,
    path: str | None = typer.Argument(None, help="/vol/NAME (all sis volumes when omitted)"),
    scan_all: bool = typer.Option(
        False, "-s", "--scan-all", help="Scan all existing data, not only new blocks."
    ),
    as_json: bool = typer.Option(False, "--json"),
    pool: str | None = PoolOpt,
):
    """Run a deduplication scan now (resumes an interrupted one first)."""
    try:
        with _pool(ctx, pool) as be:
            vols = [vol_name(path)] if path else None
            labels = {
                "collect": "collecting fingerprints",
                "sort": "sorting",
                "match": "verifying and sharing",
                "done": "done",
            }
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

                pending = be.pending()
                if pending and pending.get("state") != "done" and not as_json:
                    err.print(
                        f"resuming interrupted scan of {', '.join(pending['volumes']) or '-'} "
                        f"(phase {pending['phase']})"
                    )
                try:
                    job = be.scan(vols, scan_all, progress)
                except KeyboardInterrupt:
                    err.print("interrupted: the scan is paused; `coppice sis start` resumes it")
                    raise typer.Exit(130) from None
            block_size = be.block_size
    except CoppiceError as e:
        _fail(e)
    c = job["counters"]
    if as_json:
        print(json.dumps({k: v for k, v in job.items() if k != "work"}, indent=2))
        return
    bs_mib = lambda n: f"{n * block_size / 2**20:.1f} MiB"  # noqa: E731
    console.print(
        f"Scan of {', '.join('/vol/' + v for v in job['volumes']) or 'no volumes'} {job['state']}: "
        f"{c['scanned']} blocks scanned ({c['skipped']} unchanged skipped), "
        f"{c['shared']} shared ({bs_mib(c['shared'])} freed at most), "
        f"{c['compared']} byte comparisons, {c['collisions']} fingerprint collisions."
    )


@app.command("status")
def sis_status(
    ctx: typer.Context,
    path: str | None = typer.Argument(None, help="/vol/NAME (all volumes when omitted)"),
    long: bool = typer.Option(False, "-l", "--long", help="All details."),
    as_json: bool = typer.Option(False, "--json"),
    pool: str | None = PoolOpt,
):
    """State, progress, last run, blocks scanned and shared."""
    try:
        with _pool(ctx, pool) as be:
            st = be.status(vol_name(path) if path else None)
    except CoppiceError as e:
        _fail(e)
    rows = [st] if isinstance(st, dict) else st
    if as_json:
        print(json.dumps(st, indent=2))
        return
    if not long:
        t = Table("Path", "State", "Status", "Progress", "Last run")
        for r in rows:
            prog = (
                f"{r['phase']} {r['progress']}%"
                if r["phase"]
                else "Idle for " + (_ago(r["last_run"]["finished"]) if r["last_run"] else "ever")
            )
            t.add_row(r["path"], r["state"], r["status"], prog, _ts((r["last_run"] or {}).get("finished")))
        console.print(t)
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
            console.print(f"{k:>26}: {v}", highlight=False)
        console.print()


def _ago(t) -> str:
    import time

    s = int(time.time() - t)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
