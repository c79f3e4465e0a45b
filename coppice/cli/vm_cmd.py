"""`coppice vm`: provision N VMs from a template, list, show, refresh,
recompose, destroy.

    coppice vm provision --template T --count N --name 'web{n:03}' [--customize SPEC]
                         [--connect URI] [--start] [--igroup G] [--parallel K]
                         [--on-error stop|skip] [--nbd HOST:PORT|unix:PATH] [--tls]
                         [--disk-path nbd|rbd] [--json]
    coppice vm list | show NAME | refresh NAME | recompose NAME --snapshot S | destroy NAME [--force]
"""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, console, emit_json, provisioning

app = typer.Typer(help="VMs: provision many from a template, and their lifecycle.", no_args_is_help=True)
CONNECT = typer.Option(
    None,
    "--connect",
    "-c",
    envvar="COPPICE_CONNECT",
    help="libvirt URI (default: qemu:///system; with a daemon, its first --connect).",
)


@app.command("provision")
@command
def provision(
    template: str = typer.Option(..., "--template", "-t"),
    count: int = typer.Option(1, "--count", "-n"),
    name: str = typer.Option(..., "--name", help="Name pattern, e.g. 'web{n:03}'."),
    customize: str | None = typer.Option(None, "--customize", help="Customization spec."),
    connect: str | None = CONNECT,
    start: bool = typer.Option(False, "--start"),
    igroup: str = typer.Option("coppice_host", "--igroup"),
    parallel: int = typer.Option(1, "--parallel", "-j"),
    on_error: str = typer.Option("stop", "--on-error", help="stop or skip"),
    nbd: str | None = typer.Option(
        None, "--nbd", envvar="COPPICE_NBD", help="NBD target the VMs use: HOST:PORT or unix:PATH."
    ),
    tls: bool = typer.Option(False, "--tls", help="The target requires TLS."),
    disk_path: str = typer.Option(
        "nbd",
        "--disk-path",
        help="nbd: disks served by `coppice serve` (default); rbd: libvirt RBD network disks "
        "QEMU opens straight from Ceph, on any host that reaches it (a pool on --backend rbd only).",
    ),
    json_: bool = JSON_OPT,
):
    """Provision COUNT VMs from TEMPLATE: clone, seed, resignature, map, define (start)."""
    from contextlib import ExitStack

    with provisioning() as p, ExitStack() as stack:
        bar = task = None

        def progress(done, total, stage_totals):
            # The first report comes after every check passed: errors print before any bar.
            nonlocal bar, task
            if json_:
                return
            if bar is None:
                bar = stack.enter_context(_bar())
                task = bar.add_task("vms", total=total, stages="")
            bar.update(task, completed=done, stages=_stages_text(stage_totals, done))

        # Without --nbd the VMs' disks point at the daemon's own NBD listener when a daemon serves.
        s = p.vm_provision(
            template,
            name,
            count,
            customize,
            connect,
            start,
            igroup,
            parallel,
            on_error,
            nbd,
            tls or None,
            progress=progress,
            disk_path=disk_path,
        )
    _print_summary(s, template, count, json_)


def _bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]provision"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stages]}"),
        console=console(),
    )


def _stages_text(stage_tot: dict, done: int) -> str:
    from ..provision.provisioner import STAGES

    return (
        " ".join(f"{k} {1000 * stage_tot[k] / done:.1f}ms" for k in STAGES if k in stage_tot) if done else ""
    )


def _print_summary(d: dict, template: str, count: int, json_: bool) -> None:
    from ..errors import ProvisionIncomplete

    if json_:
        emit_json(d)
    else:
        typer.echo(
            f"{d['created']} of {count} VMs provisioned from {template} in {d['seconds']} s"
            + (f" ({1000 * d['per_vm_seconds']:.1f} ms per VM)" if d["per_vm_seconds"] else "")
            + "."
        )
        typer.echo(
            "per VM by stage: " + ", ".join(f"{k} {v:.1f} ms" for k, v in d["stage_per_vm_ms"].items())
        )
        if d.get("created") and d.get("nbd"):
            typer.echo(
                f"guests reach their disks at {d['nbd']}, mapped to igroup {d['igroup']} "
                "(`coppice igroup show` lists the initiators it admits)"
            )
        if d.get("created") and d.get("rbd"):
            typer.echo(f"guests open their disks straight from Ceph: {d['rbd']}")
        for w in d.get("warnings") or []:
            typer.echo(f"warning: {w}")
        for fl in d["failed"]:
            typer.echo(f"FAILED {fl['vm']} at {fl['stage']}: {fl['error']} (rolled back)")
        if d["skipped"]:
            typer.echo(f"skipped (on-error stop): {', '.join(d['skipped'])}")
    if d["failed"]:
        raise ProvisionIncomplete(failed=len(d["failed"]), requested=count)


@app.command("list")
@command
def list_(json_: bool = JSON_OPT):
    """List the VMs Coppice made, with their libvirt state."""
    from rich.table import Table

    with provisioning() as p:
        rows = p.vm_list()
    if json_:
        return emit_json(rows)
    t = Table("name", "state", "template", "base", "clone", "hostname", "address", "uri")
    for r in rows:
        t.add_row(
            r["name"],
            r["state"],
            str(r["template"]),
            str(r["base_snapshot"]),
            r["clone"],
            str(r["hostname"]),
            r["address"] or "-",
            r["uri"],
        )
    console().print(t)


@app.command("show")
@command
def show(name: str, json_: bool = JSON_OPT):
    """Show a VM: state, template, base snapshot, clone, space used by this VM alone."""
    with provisioning() as p:
        r = p.vm_show(name)
    if json_:
        return emit_json(r)
    for k, v in r.items():
        typer.echo(f"{k:>14}: {v}")


@app.command("refresh")
@command
def refresh(name: str, force: bool = typer.Option(False, "--force", "-f", help="Power off a running VM.")):
    """Discard the VM's changes: a new clone of its base snapshot, same identity."""
    with provisioning() as p:
        r = p.vm_refresh(name, force=force)
    typer.echo(f"VM {name} refreshed from {r['template']}@{r['base_snapshot']}.")


@app.command("recompose")
@command
def recompose(
    name: str,
    snapshot: str = typer.Option(..., "--snapshot", "-s"),
    force: bool = typer.Option(False, "--force", "-f"),
):
    """Move the VM to another snapshot of its template, keeping its identity."""
    with provisioning() as p:
        r = p.vm_recompose(name, snapshot, force=force)
    typer.echo(f"VM {name} recomposed onto {r['template']}@{r['base_snapshot']}.")


@app.command("destroy")
@command
def destroy(name: str, force: bool = typer.Option(False, "--force", "-f", help="Destroy a running VM too.")):
    """Undefine the VM, unmap its LUNs, destroy its clone."""
    with provisioning() as p:
        p.vm_destroy(name, force=force)
    typer.echo(f"VM {name} destroyed.")
