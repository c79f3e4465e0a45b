"""`coppice serve`: run the daemon that owns the pool (NBD target, REST API, scheduler).

Contract: a thin command over ``coppice.daemon.Daemon``; it runs in the
foreground until SIGTERM/SIGINT and prints one ``ready`` line when it
listens. Registered in ``main.py`` by the daemon's owner (one line).
"""

from __future__ import annotations

import logging

import typer

from .common import command, pool_path


@command
def serve(
    api: str = typer.Option(
        "127.0.0.1:8080",
        "--api",
        metavar="HOST:PORT",
        help="REST API address (token required); 'none' for the Unix socket only; port 0 picks a free port.",
    ),
    nbd: str = typer.Option(
        "127.0.0.1:10809",
        "--nbd",
        metavar="HOST:PORT",
        help="NBD target address ('[::]:PORT' serves IPv6 and IPv4); 'none' for the Unix socket POOL/nbd.sock only.",
    ),
    tls_dir: str | None = typer.Option(None, "--tls-dir", help="NBD TLS directory (coppice.nbd.tls)."),
    require_tls: bool = typer.Option(
        False, "--require-tls", help="Refuse NBD clients without TLS and a client certificate."
    ),
    tls_client_cert_optional: bool = typer.Option(
        False,
        "--tls-client-cert-optional",
        help="With --require-tls, also accept TLS clients without a certificate (matched by address).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    connect: list[str] = typer.Option(
        [],
        "--connect",
        "-c",
        envvar="COPPICE_CONNECT",
        metavar="URI",
        help="A libvirt URI requests may use (repeatable; the first is the default). Default: qemu:///system.",
    ),
    import_dir: str | None = typer.Option(
        None,
        "--import-dir",
        help="The one host directory requests may name files in (template images, kernels, SSH keys); "
        "without it the daemon reads only files clients upload.",
    ),
):
    """Serve the pool: NBD target, REST API (and POOL/coppice.sock), scheduler, jobs."""
    from ..daemon import Daemon

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    raise typer.Exit(
        Daemon(
            pool_path(),
            api=api,
            nbd=nbd,
            tls_dir=tls_dir,
            require_tls=require_tls,
            tls_client_cert_optional=tls_client_cert_optional,
            connect=connect or None,
            import_dir=import_dir,
        ).run()
    )
