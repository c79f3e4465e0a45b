"""/vms: provision N VMs from a template (a job), list, show, refresh,
recompose, destroy.

A provisioning request is checked at once (unknown template or spec, bad
pattern or count, a name already taken: a 4xx before anything is made),
then runs as a ``provision`` job whose progress is VMs done of the batch,
with the stage totals so far (``stage_totals``); its result is the
provisioner's summary. Without an explicit ``nbd`` target the VMs' disks
point at this daemon's own NBD listener (TLS when it serves TLS):
``daemon_target``, which the app hands the ``Provisioning`` façade.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..ops import Model, Name, Text, build_router


class Provision(Model):
    template: Name
    count: int = Field(1, ge=-(2**31), le=2**31)  # range checked by the provisioner (its message)
    name: Text = Field(description="name pattern, e.g. web{n:03}")
    customize: Name | None = None
    connect: Text | None = Field(None, description="libvirt URI; default: the daemon's first --connect")
    start: bool = False
    igroup: Name = "coppice_host"
    parallel: int = Field(1, ge=-(2**31), le=2**31)
    on_error: Literal["stop", "skip"] | Text = "stop"
    nbd: Text | None = Field(None, description="HOST:PORT or unix:PATH; default: this daemon's NBD listener")
    tls: bool | None = Field(None, description="the target requires TLS; default: as this daemon serves")
    disk_path: Literal["nbd", "rbd"] = Field(
        "nbd",
        description="nbd: disks served by this daemon; rbd: RBD network disks straight to Ceph (rbd pools)",
    )


class Force(Model):
    force: bool = False


class Recompose(Model):
    snapshot: Name
    force: bool = False


router = build_router(
    "vms", {"vm_provision": Provision, "vm_refresh": Force, "vm_recompose": Recompose, "vm_destroy": Force}
)


def daemon_target(state, nbd: str | None, tls: bool | None):
    """Where provisioned VMs reach their disks: ``nbd`` if given, else this daemon's NBD listener."""
    from ...provision.provisioner import Target

    if nbd:
        return Target.parse(nbd, tls=bool(tls))
    info = state.daemon_info or {}
    tls = bool(info.get("tls")) if tls is None else tls
    addr = info.get("nbd")
    if not addr:
        return Target.parse(None, tls=tls)
    host, _, port = addr.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"  # listening everywhere: the host's own guests reach it on loopback
    return Target(host=host.strip("[]"), port=int(port), tls=tls)


def run_provision(provisioning):
    """The provision job kind: one batch through the façade, progress per VM."""

    def run(ctx):
        def progress(done, total, stage_totals):
            ctx.progress("provision", done, total, stage_totals=stage_totals)

        return provisioning.vm_provision(**ctx.params, progress=progress)

    return run
