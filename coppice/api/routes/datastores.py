"""/datastores: show, clone (with resignature and registration), resignature,
rename, attach, register, and the resignature policy of a host connection."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from .. import hypervisors
from ..auth import require_token
from ..codec import to_jsonable
from ..ops import Model, Name, Text
from .vms import daemon_target

router = APIRouter(tags=["datastores"], dependencies=[Depends(require_token)])


class DatastoreClone(Model):
    src: Name
    snap: Name
    new: Name
    register_vms: bool = Field(False, alias="register", description="register every VM in libvirt")
    connect: Text | None = Field(None, description="libvirt URI; default: the daemon's first --connect")
    name: Text = Field("{vm}-{clone}", description="new VM names")
    start: bool = False
    igroup: Name = "coppice_host"
    resignature: bool | None = Field(None, description="true: resignature a copy whatever the policy")
    nbd: Text | None = None
    tls: bool | None = None


class Rename(Model):
    name: Name


class Connect(Model):
    connect: Text | None = Field(None, description="libvirt URI; default: the daemon's first --connect")


class Register(Model):
    connect: Text | None = Field(None, description="libvirt URI; default: the daemon's first --connect")
    igroup: Name = "coppice_host"
    nbd: Text | None = None


class Policy(Model):
    connect: Text | None = Field(None, description="libvirt URI; default: the daemon's first --connect")
    policy: Text


@router.get("/datastores", summary="datastores: name, signature, attached or a copy, VMs")
def show(request: Request, volume: str | None = None):
    from ...provision import datastore

    return to_jsonable(datastore.show(request.app.state.filer, volume))


@router.post(
    "/datastores/clones",
    status_code=201,
    summary="clone a whole datastore from a snapshot; resignature; register every VM on it",
)
def clone(request: Request, body: DatastoreClone):
    from fastapi.responses import JSONResponse

    from ...provision import dsclone

    state = request.app.state
    body.connect = hypervisors.of(state).resolve(body.connect)
    r = dsclone.clone_datastore(
        state.filer,
        body.src,
        body.snap,
        body.new,
        register=body.register_vms,
        uri=body.connect,
        igroup=body.igroup,
        target=daemon_target(state, body.nbd, body.tls),
        name_pattern=body.name,
        resignature=body.resignature,
        start=body.start,
        hv=hypervisors.of(state).get(body.connect) if body.register_vms else None,
    )
    return JSONResponse(to_jsonable(r), status_code=201)


@router.post("/datastores/{volume}/resignature", summary="new signature (snap-XXXXXXXX-<name>), attached")
def resignature(request: Request, volume: str):
    from ...provision import datastore

    return to_jsonable(datastore.resignature(request.app.state.filer, volume))


@router.put("/datastores/{volume}/name", summary="rename the datastore (the volume keeps its name)")
def rename(request: Request, volume: str, body: Rename):
    from ...provision import datastore

    return to_jsonable(datastore.rename(request.app.state.filer, volume, body.name))


@router.post("/datastores/{volume}/attach", summary="attach; a copy is resignatured or refused by the policy")
def attach(request: Request, volume: str, body: Connect | None = None):
    from ...provision import datastore, dsclone

    f = request.app.state.filer
    uri = hypervisors.of(request.app.state).resolve((body or Connect()).connect)
    return to_jsonable(datastore.attach(f, volume, dsclone.get_policy(f, uri)))


@router.post("/datastores/{volume}/register", summary="register every VM of an attached datastore in libvirt")
def register(request: Request, volume: str, body: Register | None = None):
    from ...provision import dsclone

    state = request.app.state
    body = body or Register()
    body.connect = hypervisors.of(state).resolve(body.connect)
    return to_jsonable(
        dsclone.register_datastore(
            state.filer,
            volume,
            body.connect,
            body.igroup,
            daemon_target(state, body.nbd, None),
            hv=hypervisors.of(state).get(body.connect),
        )
    )


@router.get("/datastores/policy", summary="the resignature policy of a host connection")
def get_policy(request: Request, connect: str | None = None):
    from ...provision import dsclone

    connect = hypervisors.of(request.app.state).resolve(connect)
    return {"connect": connect, "policy": dsclone.get_policy(request.app.state.filer, connect)}


@router.put("/datastores/policy", summary="set the resignature policy (auto, ask, off) of a host connection")
def set_policy(request: Request, body: Policy):
    from ...provision import dsclone

    f = request.app.state.filer
    body.connect = hypervisors.of(request.app.state).resolve(body.connect)
    dsclone.set_policy(f, body.connect, body.policy)
    return {"connect": body.connect, "policy": dsclone.get_policy(f, body.connect)}
