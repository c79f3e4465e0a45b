"""`coppice datastore`: show, attach, resignature, rename, register, clone,
policy.

    coppice datastore show [VOLUME] [--json]
    coppice datastore clone SRC SNAP NEW [--register] [--connect URI] [--name '{vm}-{clone}'] [--start] [--yes]
    coppice datastore resignature VOLUME | rename VOLUME NAME | attach VOLUME | register VOLUME
    coppice datastore policy [auto|ask|off] [--connect URI]
"""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, console, emit_json, provisioning

app = typer.Typer(
    help="Datastores: volumes of VMs with signatures (resignature on copy).", no_args_is_help=True
)
CONNECT = typer.Option(
    None,
    "--connect",
    "-c",
    envvar="COPPICE_CONNECT",
    help="libvirt URI (default: qemu:///system; with a daemon, its first --connect).",
)


@app.command("show")
@command
def show(volume: str | None = typer.Argument(None), json_: bool = JSON_OPT):
    """Datastores: name, signature, attached or a copy, VMs."""
    from rich.table import Table

    with provisioning() as p:
        rows = p.datastore_show(volume)
    if json_:
        return emit_json(rows)
    t = Table("volume", "name", "uuid", "attached", "copy of", "parent", "VMs")
    for r in rows:
        t.add_row(
            r["volume"],
            r["name"],
            r["uuid"],
            "yes" if r["attached"] else "no",
            r["copy_of"] or "-",
            r["parent"] or "-",
            ", ".join(r["vms"]),
        )
    console().print(t)


@app.command("clone")
@command
def clone(
    src: str,
    snap: str,
    new: str,
    register: bool = typer.Option(False, "--register"),
    connect: str | None = CONNECT,
    name: str = typer.Option("{vm}-{clone}", "--name", help="New VM names."),
    start: bool = typer.Option(False, "--start"),
    igroup: str = typer.Option("coppice_host", "--igroup"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Resignature a copy without asking (policy ask)."),
    nbd: str | None = typer.Option(None, "--nbd", envvar="COPPICE_NBD"),
    tls: bool = typer.Option(False, "--tls"),
    json_: bool = JSON_OPT,
):
    """Clone a whole datastore from a snapshot; resignature; register every VM on it."""
    from ..provision.provisioning_errors import DatastoreIsCopy

    with provisioning() as p:
        # Without --nbd the VMs' disks point at the daemon's own NBD listener when a daemon serves.
        def clone_(resig):
            return p.datastore_clone(
                src, snap, new, register, connect, name, start, igroup, resig, nbd, tls or None
            )

        try:
            r = clone_(True if yes else None)
        except DatastoreIsCopy as e:
            if (
                p.datastore_policy(connect)["policy"] != "ask"
                or json_
                or not typer.confirm(f"{e} Resignature it now?")
            ):
                raise
            r = clone_(True)
    if json_:
        return emit_json(r)
    a = r["datastore"]
    typer.echo(f"Datastore {src}@{snap} cloned to volume {new} in {r['seconds']} s.")
    if a["copy"]:
        typer.echo(f"Copy detected ({a['reason']}); resignatured as {a['name']} ({a['uuid']}).")
    for v in r["vms"]:
        typer.echo(
            f"registered {v['name']} (from {v['from']}), uuid {v['uuid']}, mac {v['mac']}, LUN IDs "
            + ", ".join(f"{p}={i}" for p, i in v["luns"].items())
        )


@app.command("resignature")
@command
def resignature(volume: str, json_: bool = JSON_OPT):
    """Give the datastore a new signature (snap-XXXXXXXX-<name>) and attach it."""
    with provisioning() as p:
        d = p.datastore_resignature(volume)
    if json_:
        return emit_json(d)
    typer.echo(f"Datastore on {volume} resignatured: {d['name']} ({d['uuid']}).")


@app.command("rename")
@command
def rename(volume: str, name: str):
    """Rename the datastore (its display name; the volume keeps its name)."""
    with provisioning() as p:
        p.datastore_rename(volume, name)
    typer.echo(f"Datastore on {volume} renamed to {name}.")


@app.command("attach")
@command
def attach(volume: str, connect: str | None = CONNECT, json_: bool = JSON_OPT):
    """Attach a datastore; a copy is resignatured or refused by the host's policy."""
    with provisioning() as p:
        r = p.datastore_attach(volume, connect)
    if json_:
        return emit_json(r)
    typer.echo(
        f"Datastore {r['name']} attached" + (" (copy: resignatured)" if r["resignatured"] else "") + "."
    )


@app.command("register")
@command
def register(
    volume: str,
    connect: str | None = CONNECT,
    igroup: str = typer.Option("coppice_host", "--igroup"),
    nbd: str | None = typer.Option(None, "--nbd", envvar="COPPICE_NBD"),
    json_: bool = JSON_OPT,
):
    """Register every VM of an attached datastore in libvirt, as it is."""
    with provisioning() as p:
        r = p.datastore_register(volume, connect, igroup, nbd)
    if json_:
        return emit_json(r)
    for v in r:
        typer.echo(f"registered {v['name']}")


@app.command("policy")
@command
def policy(value: str | None = typer.Argument(None, help="auto, ask or off"), connect: str | None = CONNECT):
    """Show or set the resignature policy of a host connection."""
    with provisioning() as p:
        typer.echo(
            f"resignature={p.datastore_policy(connect, value)['policy']} for {connect or 'the default hypervisor'}"
        )
