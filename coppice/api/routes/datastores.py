"""/datastores: show, clone (with resignature and registration), resignature,
rename, attach, register, and the resignature policy of a host connection."""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Text, build_router


class DatastoreShow(Model):
    volume: Name | None = None


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


router = build_router(
    "datastores",
    {
        "datastore_show": DatastoreShow,
        "datastore_clone": DatastoreClone,
        "datastore_policy GET": Connect,
        "datastore_policy PUT": Policy,
        "datastore_rename": Rename,
        "datastore_attach": Connect,
        "datastore_register": Register,
    },
)
