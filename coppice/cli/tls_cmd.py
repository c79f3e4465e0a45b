"""`coppice tls`: the NBD target's certificates.

    coppice tls init DIR [--hostname H]...      CA + server certificate (kept if present)
    coppice tls client DIR INITIATOR CLIENT_DIR  a client certificate, CN = INITIATOR

Thin: the work is coppice.nbd.tls. The initiator name in the certificate is
what igroups match (`coppice igroup add G INITIATOR`), so a host presenting
it through QEMU's tls-creds-x509 (endpoint=client, dir=CLIENT_DIR) or
libnbd's tls-certificates=CLIENT_DIR sees the LUNs mapped to its igroup.
"""

from __future__ import annotations

import typer

from .common import command, console

app = typer.Typer(
    help="TLS for the NBD target: a CA, the server's and per-initiator client certificates.",
    no_args_is_help=True,
)


@app.command("init")
@command
def init(
    tls_dir: str = typer.Argument(..., help="Directory for the CA and server certificate."),
    hostname: list[str] = typer.Option(
        None,
        "--hostname",
        help="Extra name or address for the server "
        "certificate (127.0.0.1, ::1, localhost and this host are always in)",
    ),
):
    """Create the CA and the server certificate for `coppice serve --tls-dir DIR`."""
    from ..nbd import tls

    tls.init_tls_dir(tls_dir, hostnames=hostname or None)
    console().print(
        f"TLS directory {tls_dir} ready: ca-cert.pem, server-cert.pem, server-key.pem; "
        f"serve with `coppice serve --tls-dir {tls_dir} [--require-tls]`"
    )


@app.command("client")
@command
def client(
    tls_dir: str = typer.Argument(..., help="The directory `coppice tls init` made."),
    initiator: str = typer.Argument(..., help="Initiator name (certificate CN), as listed in an igroup."),
    client_dir: str = typer.Argument(..., help="Where to write the client's files."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing client files."),
):
    """Create a client certificate for INITIATOR in CLIENT_DIR."""
    from ..nbd import tls

    tls.create_client_cert(tls_dir, initiator, client_dir, force=force)
    console().print(
        f"client certificate for {initiator} in {client_dir} "
        f"(ca-cert.pem, client-cert.pem, client-key.pem): use it as QEMU's "
        f"tls-creds-x509 dir with endpoint=client, or nbdinfo's tls-certificates={client_dir}"
    )
