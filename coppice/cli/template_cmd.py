"""`coppice template`: import, list, show, delete.

coppice template import NAME --image FILE [--memory MIB --vcpus N --os-type T]
                        [--kernel F --initrd F --cmdline TEXT]
coppice template list|show NAME|delete NAME [--json]
"""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, console, emit_json, provisioning

app = typer.Typer(
    help="Templates: golden images with a base snapshot, generalized offline where libguestfs can "
    "inspect the image (Linux); `template list` shows which were.",
    no_args_is_help=True,
)


@app.command("import")
@command
def import_(
    name: str,
    image: str = typer.Option(..., "--image", help="Disk image (any qemu-img format)."),
    memory: int = typer.Option(256, "--memory", help="MiB."),
    vcpus: int = typer.Option(1, "--vcpus"),
    os_type: str = typer.Option("linux", "--os-type"),
    kernel: str | None = typer.Option(None, "--kernel", help="Direct-boot kernel."),
    initrd: str | None = typer.Option(None, "--initrd"),
    cmdline: str | None = typer.Option(None, "--cmdline"),
    generalize: bool = typer.Option(
        True,
        "--generalize/--no-generalize",
        help="Clear the golden VM's identity on the base snapshot (libguestfs, once per import).",
    ),
    keep: list[str] = typer.Option(
        [], "--keep", metavar="OP", help="A generalization operation to skip (repeatable), e.g. ssh-hostkeys."
    ),
    json_: bool = JSON_OPT,
):
    """Import a disk image as template NAME (datastore tpl_NAME, snapshots imported and base)."""
    with provisioning() as p:
        r = p.template_import(
            name,
            image,
            memory_mib=memory,
            vcpus=vcpus,
            os_type=os_type,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            generalize=generalize,
            keep=keep,
        )
    if json_:
        return emit_json(r)
    from ..provision.generalize import report_lines

    typer.echo(
        f"Template {name} imported from {r['format']} image ({r['virtual_size']} bytes, "
        f"{r['imported_bytes']} written) in {r['import_seconds']} s; base snapshot "
        f"{r['volume']}@{r['base_snapshot']}."
    )
    for line in report_lines(r["generalized"]):
        typer.echo(line, err=line.startswith("warning:"))


@app.command("list")
@command
def list_(json_: bool = JSON_OPT):
    """List the templates."""
    from rich.table import Table

    with provisioning() as p:
        rows = p.template_list()
    if json_:
        return emit_json(rows)
    t = Table("name", "volume", "base", "format", "size", "generalized", "VMs")
    for r in rows:
        t.add_row(
            r["name"],
            r["volume"],
            r["base_snapshot"],
            str(r["format"]),
            str(r["virtual_size"]),
            f"yes ({len(r['generalized']['cleared'])} files)" if r.get("is_generalized") else "no",
            str(r["vms"]),
        )
    console().print(t)


@app.command("show")
@command
def show(name: str, json_: bool = JSON_OPT):
    """Show a template and the VMs that depend on it."""
    with provisioning() as p:
        r = p.template_show(name)
    if json_:
        return emit_json(r)
    for k in (
        "name",
        "volume",
        "datastore",
        "base_snapshot",
        "snapshots",
        "format",
        "virtual_size",
        "is_generalized",
        "generalized",
        "memory_mib",
        "vcpus",
        "os_type",
        "vms",
    ):
        typer.echo(f"{k:>14}: {r.get(k)}")


@app.command("delete")
@command
def delete(name: str):
    """Delete a template (refused while VMs depend on it)."""
    with provisioning() as p:
        p.template_delete(name)
    typer.echo(f"Template {name} deleted.")
