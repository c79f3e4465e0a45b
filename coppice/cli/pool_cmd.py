"""`coppice pool create|info`, `coppice fsck`, `coppice scrub`."""

from __future__ import annotations

import typer

from ..filer.sizes import format_size, parse_size
from .common import JSON_OPT, STATE, command, console, default_pool, emit_json, filer

app = typer.Typer(help="Pools: create one, show it.", no_args_is_help=True)


@app.command("create")
@command
def create(
    directory: str | None = typer.Argument(None, help="Directory (default: --pool or its default)."),
    block_size: str = typer.Option("4k", "--block-size", help="Block size, a power of two (4k)."),
    capacity: str | None = typer.Option(None, "--capacity", help="Cap the data, e.g. 100g."),
    backend: str = typer.Option(
        "native", "--backend", help="Where LUN data lives: native (the embedded engine) or rbd (Ceph)."
    ),
    ceph_conf: str | None = typer.Option(None, "--ceph-conf", help="ceph.conf of the cluster (rbd)."),
    ceph_pool: str | None = typer.Option(None, "--ceph-pool", help="Ceph pool for the images (rbd)."),
    json_: bool = JSON_OPT,
):
    """Create a pool in DIRECTORY."""
    from ..errors import InvalidArgument
    from ..filer import Filer

    path = directory or STATE.pool or default_pool()
    bs = parse_size(block_size, "block size")
    cap = parse_size(capacity, "capacity") if capacity is not None else None
    if backend not in ("native", "rbd"):
        raise InvalidArgument(detail=f"--backend {backend!r} is unknown: use native or rbd")
    if backend == "rbd" and (not ceph_conf or not ceph_pool):
        raise InvalidArgument(detail="--backend rbd needs --ceph-conf FILE and --ceph-pool POOL")
    if backend == "native" and (ceph_conf or ceph_pool):
        raise InvalidArgument(detail="--ceph-conf and --ceph-pool apply only with --backend rbd")
    f = Filer.create(
        path, block_size=bs, capacity=cap, backend=backend, ceph_conf=ceph_conf, ceph_pool=ceph_pool
    )
    try:
        info = f.pool_info()
    finally:
        f.close()
    if json_:
        return emit_json(info)
    if backend == "rbd":
        typer.echo(f"Pool created at {info['path']}: data in Ceph pool {ceph_pool} ({info['ceph_conf']}).")
        return
    typer.echo(
        f"Pool created at {info['path']} (block size {format_size(bs)}"
        + (f", capacity {format_size(cap)})." if cap else ").")
    )


@app.command("info")
@command
def info(json_: bool = JSON_OPT):
    """Pool location, size and usage."""
    with filer() as f:
        i = f.pool_info()
    if json_:
        return emit_json(i)
    typer.echo(
        f"pool {i['path']}: {i['volumes']} volume(s), {format_size(i['used_bytes'])} used, "
        f"{format_size(i['free_bytes'])} free, block size {format_size(i['block_size'])}"
        + (f"; data in Ceph pool {i['ceph_pool']} ({i['ceph_conf']})" if i.get("backend") == "rbd" else "")
    )


@command
def fsck(json_: bool = JSON_OPT):
    """Check the pool's reference counts and block ownership."""
    with filer() as f:
        r = f.fsck()
    if json_:
        emit_json(r)
    else:
        typer.echo(
            f"fsck: {'clean' if r['clean'] else 'PROBLEMS FOUND'}: {r['pages']} pages, {r['blocks']} blocks"
        )
        for p in r["problems"]:
            typer.echo(f"  {p}")
    if not r["clean"]:
        raise typer.Exit(8)


@command
def scrub(json_: bool = JSON_OPT):
    """Read every block and verify its checksum."""
    from rich.progress import BarColumn, Progress, TextColumn

    with filer() as f:
        con = console()
        with Progress(
            TextColumn("scrub"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            console=con,
            transient=True,
            disable=json_ or not con.is_terminal,
        ) as bar:
            task = bar.add_task("scrub", total=None)

            def progress(done, total):
                bar.update(task, completed=done, total=total or 1)

            r = f.scrub(progress)
    if json_:
        emit_json(r)
    else:
        typer.echo(
            f"scrub: {'clean' if r['clean'] else 'ERRORS FOUND'}: {r['blocks_checked']} blocks, "
            f"{format_size(r['bytes_checked'])} checked"
        )
        for e in r["errors"]:
            typer.echo(f"  {e}")
    if not r["clean"]:
        raise typer.Exit(8)
