"""/vms: provision N VMs from a template (a job), list, show, refresh,
recompose, destroy.

A provisioning request is checked at once (unknown template or spec, bad
pattern or count, a name already taken: a 4xx before anything is made),
then runs as a ``provision`` job whose progress is VMs done of the batch,
with the stage totals so far (``stage_totals``); its result is the
provisioner's summary. Without an explicit ``nbd`` target the VMs' disks
point at this daemon's own NBD listener (TLS when it serves TLS). libvirt
connections are the daemon's (``coppice.api.hypervisors``).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ...errors import InvalidArgument
from .. import hypervisors
from ..auth import require_token
from ..codec import to_jsonable
from ..ops import Model, Name, Text

router = APIRouter(tags=["vms"], dependencies=[Depends(require_token)])


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


class Force(Model):
    force: bool = False


class Recompose(Model):
    snapshot: Name
    force: bool = False


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


def _provisioner(state):
    from ...provision.provisioner import Provisioner

    return Provisioner(state.filer, hypervisor_factory=hypervisors.of(state).get)


@router.post("/vms", status_code=202, summary="provision COUNT VMs from a template (a job; poll /jobs/{id})")
def provision(request: Request, body: Provision):
    state = request.app.state
    if body.on_error not in ("stop", "skip"):
        raise InvalidArgument(detail=f"on_error {body.on_error!r} is invalid: use stop or skip")
    if not 1 <= body.parallel <= 64:
        raise InvalidArgument(detail=f"parallel {body.parallel!r} is invalid: use 1 to 64 workers")
    body.connect = hypervisors.of(state).resolve(body.connect)
    p = _provisioner(state)
    try:  # everything checked before the job starts: errors are this call's 4xx
        p.plan(body.template, body.count, body.name, body.customize, body.connect, body.igroup)
    finally:
        p.close()
    target = daemon_target(state, body.nbd, body.tls)
    params = body.model_dump()
    params["target"] = target.to_dict()
    return JSONResponse(state.jobs.submit("provision", params), status_code=202)


def run_provision(state):
    """The provision job kind: one batch, progress per VM."""

    def run(ctx):
        from ...provision.provisioner import STAGES, Target

        a = ctx.params
        totals: dict[str, float] = {}
        done = [0]

        def progress(r):
            for k, v in r.stages.items():
                totals[k] = totals.get(k, 0.0) + v
            done[0] += 1
            ctx.progress(
                "provision", done[0], a["count"], stage_totals={k: totals[k] for k in STAGES if k in totals}
            )

        ctx.progress("provision", 0, a["count"], stage_totals={})
        p = _provisioner(state)
        try:
            s = p.provision(
                a["template"],
                a["count"],
                a["name"],
                a["customize"],
                a["connect"],
                a["start"],
                a["igroup"],
                a["parallel"],
                a["on_error"],
                Target(**a["target"]),
                progress=progress,
            )
        finally:
            p.close()
        return s.to_dict()

    return run


@router.get("/vms", summary="the VMs Coppice made, with their libvirt state")
def list_vms(request: Request):
    from ...provision import registry, vm

    state = request.app.state
    uris = [rec.get("uri") or "test:///default" for _, rec in registry.items(state.filer, registry.VM)]
    return to_jsonable(vm.list_(state.filer, hypervisors=hypervisors.of(state).for_uris(uris)))


@router.get("/vms/{name}", summary="a VM: state, template, base snapshot, clone, space of its own")
def show_vm(request: Request, name: str):
    from ...provision import vm

    state = request.app.state
    rec = vm.get(state.filer, name)
    return to_jsonable(
        vm.show(
            state.filer,
            name,
            hypervisors=hypervisors.of(state).for_uris([rec.get("uri") or "test:///default"]),
        )
    )


@router.post("/vms/{name}/refresh", summary="discard the VM's changes: a new clone of its base snapshot")
def refresh_vm(request: Request, name: str, body: Force | None = None):
    from ...provision import vm

    state = request.app.state
    return to_jsonable(
        vm.refresh(
            state.filer, name, force=(body or Force()).force, hypervisor_factory=hypervisors.of(state).get
        )
    )


@router.post("/vms/{name}/recompose", summary="move the VM to another snapshot of its template")
def recompose_vm(request: Request, name: str, body: Recompose):
    from ...provision import vm

    state = request.app.state
    return to_jsonable(
        vm.recompose(
            state.filer, name, body.snapshot, force=body.force, hypervisor_factory=hypervisors.of(state).get
        )
    )


@router.delete("/vms/{name}", summary="undefine the VM, unmap its LUNs, destroy its clone")
def destroy_vm(request: Request, name: str, force: bool = False):
    from ...provision import vm

    state = request.app.state
    return to_jsonable(
        vm.destroy(state.filer, name, force=force, hypervisor_factory=hypervisors.of(state).get)
    )
