"""`coppice custspec`: customization specs (hostname, user, SSH key,
password hash, network, run-once commands), rendered per VM as a NoCloud seed.

    coppice custspec create NAME [--hostname vm-name|PATTERN] [--user U --ssh-key FILE]
                           [--password-hash H] [--network dhcp|static:POOL] [--runcmd CMD]...
    coppice custspec list|show NAME|delete NAME [--json]
"""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, console, emit_json, provisioning

app = typer.Typer(help="Customization specs: each guest's identity.", no_args_is_help=True)


@app.command("create")
@command
def create(
    name: str,
    hostname: str = typer.Option("vm-name", "--hostname", help="vm-name or a pattern with {vm} {n}."),
    user: str | None = typer.Option(None, "--user"),
    ssh_key: str | None = typer.Option(None, "--ssh-key", help="Public key file (read now)."),
    password_hash: str | None = typer.Option(None, "--password-hash", help="crypt(3) hash."),
    network: str = typer.Option("dhcp", "--network", help="dhcp or static:NET[,gw=A][,dns=A+B]"),
    runcmd: list[str] | None = typer.Option(None, "--runcmd", help="Run once at first boot."),
    json_: bool = JSON_OPT,
):
    """Create a customization spec."""
    with provisioning() as p:
        r = p.custspec_create(
            name,
            hostname=hostname,
            user=user,
            ssh_key_file=ssh_key,
            password_hash=password_hash,
            network=network,
            runcmd=runcmd or [],
        )
    if json_:
        return emit_json(r)
    typer.echo(f"Customization spec {name} created.")


@app.command("list")
@command
def list_(json_: bool = JSON_OPT):
    """List the customization specs."""
    from rich.table import Table

    with provisioning() as p:
        rows = p.custspec_list()
    if json_:
        return emit_json(rows)
    t = Table("name", "hostname", "user", "keys", "password", "network", "runcmd", "leases")
    for r in rows:
        t.add_row(
            r["name"],
            r["hostname"],
            r["user"] or "-",
            str(r["ssh_keys"]),
            r["password"],
            r["network"],
            str(len(r["runcmd"])),
            str(r["leases"]),
        )
    console().print(t)


@app.command("show")
@command
def show(name: str, json_: bool = JSON_OPT):
    """Show a customization spec."""
    with provisioning() as p:
        r = p.custspec_show(name)
    if json_:
        return emit_json(r)
    for k, v in r.items():
        typer.echo(f"{k:>13}: {v}")


@app.command("delete")
@command
def delete(name: str):
    """Delete a customization spec (VMs made with it keep their seeds)."""
    with provisioning() as p:
        p.custspec_delete(name)
    typer.echo(f"Customization spec {name} deleted.")
