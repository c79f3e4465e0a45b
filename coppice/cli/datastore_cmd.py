"""`coppice datastore`: show, attach, resignature, rename, register, clone,
policy.

    coppice datastore show [VOLUME] [--json]
    coppice datastore clone SRC SNAP NEW [--register] [--connect URI] [--name '{vm}-{clone}'] [--start] [--yes]
    coppice datastore resignature VOLUME | rename VOLUME NAME | attach VOLUME | register VOLUME
    coppice datastore policy [auto|ask|off] [--connect URI]
"""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, console, emit_json, filer
from .common import is_remote as _remote
from .common import path_segment as _seg


def local_uri(connect: str | None) -> str:
    from ..provision.hypervisor import local_uri

    return local_uri(connect)


def _policy(f, connect: str | None) -> str:
    from ..provision import dsclone

    if _remote(f):
        return f.request("GET", "/datastores/policy", params={"connect": connect})["policy"]
    return dsclone.get_policy(f, local_uri(connect))


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

    from ..provision import datastore

    with filer() as f:
        rows = (
            f.request("GET", "/datastores", params={"volume": volume})
            if _remote(f)
            else datastore.show(f, volume)
        )
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
    from ..provision import dsclone
    from ..provision.provisioner import Target
    from ..provision.provisioning_errors import DatastoreIsCopy

    with filer() as f:
        if _remote(f):  # without --nbd the VMs' disks point at the daemon's own NBD listener
            body = dict(
                src=src,
                snap=snap,
                new=new,
                register=register,
                connect=connect,
                name=name,
                start=start,
                igroup=igroup,
                nbd=nbd,
                tls=tls if (tls or nbd) else None,
            )

            def clone_(resig):
                return f.request("POST", "/datastores/clones", json={**body, "resignature": resig})
        else:
            kw = dict(
                register=register,
                uri=local_uri(connect),
                igroup=igroup,
                target=Target.parse(nbd, tls),
                name_pattern=name,
                start=start,
            )

            def clone_(resig):
                return dsclone.clone_datastore(f, src, snap, new, resignature=resig, **kw)

        try:
            r = clone_(True if yes else None)
        except DatastoreIsCopy as e:
            if _policy(f, connect) != "ask" or json_ or not typer.confirm(f"{e} Resignature it now?"):
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
    from ..provision import datastore

    with filer() as f:
        d = (
            f.request("POST", f"/datastores/{_seg(volume)}/resignature")
            if _remote(f)
            else datastore.resignature(f, volume)
        )
    if json_:
        return emit_json(d)
    typer.echo(f"Datastore on {volume} resignatured: {d['name']} ({d['uuid']}).")


@app.command("rename")
@command
def rename(volume: str, name: str):
    """Rename the datastore (its display name; the volume keeps its name)."""
    from ..provision import datastore

    with filer() as f:
        if _remote(f):
            f.request("PUT", f"/datastores/{_seg(volume)}/name", json={"name": name})
        else:
            datastore.rename(f, volume, name)
    typer.echo(f"Datastore on {volume} renamed to {name}.")


@app.command("attach")
@command
def attach(volume: str, connect: str | None = CONNECT, json_: bool = JSON_OPT):
    """Attach a datastore; a copy is resignatured or refused by the host's policy."""
    from ..provision import datastore, dsclone

    with filer() as f:
        r = (
            f.request("POST", f"/datastores/{_seg(volume)}/attach", json={"connect": connect})
            if _remote(f)
            else datastore.attach(f, volume, dsclone.get_policy(f, local_uri(connect)))
        )
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
    from ..provision import dsclone
    from ..provision.provisioner import Target

    with filer() as f:
        r = (
            f.request(
                "POST",
                f"/datastores/{_seg(volume)}/register",
                json={"connect": connect, "igroup": igroup, "nbd": nbd},
            )
            if _remote(f)
            else dsclone.register_datastore(f, volume, local_uri(connect), igroup, Target.parse(nbd))
        )
    if json_:
        return emit_json(r)
    for v in r:
        typer.echo(f"registered {v['name']}")


@app.command("policy")
@command
def policy(value: str | None = typer.Argument(None, help="auto, ask or off"), connect: str | None = CONNECT):
    """Show or set the resignature policy of a host connection."""
    from ..provision import dsclone

    with filer() as f:
        if value is not None:
            if _remote(f):
                f.request("PUT", "/datastores/policy", json={"connect": connect, "policy": value})
            else:
                dsclone.set_policy(f, local_uri(connect), value)
        typer.echo(f"resignature={_policy(f, connect)} for {connect or 'the default hypervisor'}")
