"""The operation table: every call the REST API serves, as plain data.

Contract: one ``Op`` per HTTP route of a façade method. A façade is the one
Python API of a layer, with a local implementation that does the work and a
remote one that asks a daemon: ``filer`` (``coppice.filer.Filer`` /
``coppice.remote.RemoteFiler``), ``provision``
(``coppice.provision.facade.Provisioning`` / ``coppice.remote.RemoteProvisioning``)
and ``dedup`` (``coppice.dedup.facade.Dedup`` / ``coppice.remote.RemoteDedup``).
The same table builds both sides: ``coppice.api.ops.build_router`` makes
the FastAPI routes (validated by the pydantic models the route modules
name per method) and ``coppice.client.Daemon`` turns a Python call into the
request. This module imports nothing: the CLI reads it without loading a
server framework.

An op's ``path`` names ``{param}`` segments after the method's parameters;
``body`` and ``query`` list the parameters that travel in the JSON body or
the query string. A method with two ops (read with GET, set with PUT) picks
the one whose ``only_if`` parameter was given, else the one without. A
method returning ``None`` answers 204; ``result_key`` wraps a scalar result
as ``{key: value}``. A ``job`` op starts that daemon job kind (202 and the
job record; ``single``: an unfinished job of that kind is answered instead
of a new one) and the remote façade follows it to its result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Op:
    layer: str
    resource: str
    method: str
    verb: str
    path: str
    body: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    summary: str = ""
    result_key: str | None = None
    status: int | None = None
    only_if: str | None = None
    job: str | None = None
    single: bool = False

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


def _rows(layer: str, resource: str):
    """Rows of one resource: ``row(method, "VERB /path", body="a b", query="c", **more)``."""

    def row(method: str, route: str, body: str = "", query: str = "", **more) -> Op:
        verb, path = route.split(" ", 1)
        return Op(layer, resource, method, verb, path, tuple(body.split()), tuple(query.split()), **more)

    return row


POOL = _rows("filer", "pool")
VOLUMES = _rows("filer", "volumes")
SNAPSHOTS = _rows("filer", "snapshots")
CLONES = _rows("filer", "clones")
LUNS = _rows("filer", "luns")
IGROUPS = _rows("filer", "igroups")
MAPS = _rows("filer", "maps")
SCHEDULES = _rows("filer", "schedules")
DEDUP = _rows("dedup", "dedup")
TEMPLATES = _rows("provision", "templates")
CUSTSPECS = _rows("provision", "custspecs")
VMS = _rows("provision", "vms")
DATASTORES = _rows("provision", "datastores")

OPS: list[Op] = [
    # pool
    POOL("pool_info", "GET /pool", summary="pool identity and space"),
    POOL("df", "GET /pool/df", query="volume savings", summary="space per volume and pool"),
    POOL("fsck", "POST /pool/fsck", summary="check reference counts (blocks management meanwhile)"),
    POOL("dump", "GET /pool/dump", summary="every volume, snapshot and object (tests, support)"),
    # volumes
    VOLUMES(
        "vol_create",
        "POST /volumes",
        body="name size guarantee snap_reserve",
        status=201,
        summary="create a volume",
    ),
    VOLUMES("vol_show", "GET /volumes", query="name", summary="list volumes (or one)"),
    VOLUMES("vol_info", "GET /volumes/{name}", summary="one volume"),
    VOLUMES(
        "vol_destroy",
        "DELETE /volumes/{name}",
        query="force children",
        result_key="destroyed",
        summary="destroy a volume",
    ),
    VOLUMES("vol_rename", "POST /volumes/{old}/rename", body="new", summary="rename a volume"),
    VOLUMES("vol_size", "PUT /volumes/{name}/size", body="size", summary="grow or shrink a volume"),
    VOLUMES("vol_options", "GET /volumes/{name}/options", summary="a volume's options"),
    VOLUMES(
        "vol_set_option",
        "PUT /volumes/{name}/options/{option}",
        body="value",
        summary="set a volume option (nosnap, guarantee, snap_reserve, snap_sched)",
    ),
    VOLUMES("file_list", "GET /volumes/{vol}/files", summary="small files in a volume"),
    VOLUMES("file_delete", "DELETE /volumes/{vol}/files/{name}", summary="delete a small file"),
    # snapshots
    SNAPSHOTS(
        "snap_create", "POST /volumes/{vol}/snapshots", body="name", status=201, summary="create a snapshot"
    ),
    SNAPSHOTS("snap_list", "GET /volumes/{vol}/snapshots", summary="a volume's snapshots, newest first"),
    SNAPSHOTS("snap_delete", "DELETE /volumes/{vol}/snapshots/{name}", summary="delete a snapshot"),
    SNAPSHOTS(
        "snap_rename", "POST /volumes/{vol}/snapshots/{old}/rename", body="new", summary="rename a snapshot"
    ),
    SNAPSHOTS("snap_restore", "POST /volumes/{vol}/snapshots/{name}/restore", summary="SnapRestore"),
    SNAPSHOTS(
        "snap_reserve",
        "GET /volumes/{vol}/snap-reserve",
        result_key="percent",
        summary="the snapshot reserve",
    ),
    SNAPSHOTS(
        "snap_reserve",
        "PUT /volumes/{vol}/snap-reserve",
        body="percent",
        result_key="percent",
        only_if="percent",
        summary="set the reserve",
    ),
    # clones
    CLONES(
        "clone_create",
        "POST /clones",
        body="new parent snap remap schedule",
        status=201,
        summary="clone a volume from a snapshot (O(1)); LUNs whose maps collide come up offline",
    ),
    CLONES("clone_show", "GET /clones", summary="the clone tree"),
    CLONES("clone_split_status", "GET /clones/{vol}/split", summary="split progress"),
    CLONES("clone_split_estimate", "GET /clones/{vol}/split/estimate", summary="space a split needs"),
    # luns
    LUNS("lun_create", "POST /luns", body="path size ostype comment", status=201, summary="create a LUN"),
    LUNS("lun_show", "GET /luns", query="path volume snapshots", summary="list LUNs"),
    LUNS("lun_info", "GET /luns/info", query="path", summary="one LUN"),
    LUNS("lun_destroy", "DELETE /luns", query="path force", summary="destroy a LUN"),
    LUNS("lun_resize", "PUT /luns/size", body="path size force", summary="resize a LUN"),
    LUNS("lun_online", "POST /luns/online", body="path", summary="bring a LUN online"),
    LUNS("lun_offline", "POST /luns/offline", body="path", summary="take a LUN offline"),
    LUNS("lun_rename", "POST /luns/rename", body="path new_path", summary="rename a LUN"),
    LUNS("lun_comment", "PUT /luns/comment", body="path text", summary="set a LUN's comment"),
    LUNS(
        "lun_clone_create",
        "POST /luns/clones",
        body="new_path parent_path snap",
        status=201,
        summary="clone a LUN from a snapshot inside its volume",
    ),
    # igroups
    IGROUPS(
        "igroup_create",
        "POST /igroups",
        body="name initiators ostype protocol",
        status=201,
        summary="create an igroup",
    ),
    IGROUPS("igroup_show", "GET /igroups", query="name", summary="list igroups"),
    IGROUPS("igroup_destroy", "DELETE /igroups/{name}", query="force", summary="destroy an igroup"),
    IGROUPS("igroup_add", "POST /igroups/{name}/initiators", body="initiator", summary="add one"),
    IGROUPS(
        "igroup_remove", "DELETE /igroups/{name}/initiators", query="initiator", summary="remove an initiator"
    ),
    IGROUPS("igroup_rename", "POST /igroups/{old}/rename", body="new", summary="rename an igroup"),
    IGROUPS("igroup_set", "PUT /igroups/{name}/ostype", body="ostype", summary="set the ostype"),
    # maps
    MAPS(
        "lun_map",
        "POST /maps",
        body="path igroup lun_id",
        result_key="lun_id",
        status=201,
        summary="map a LUN to an igroup",
    ),
    MAPS("lun_unmap", "DELETE /maps", query="path igroup", summary="unmap (cuts NBD clients)"),
    MAPS("lun_maps", "GET /maps", summary="every LUN map"),
    # schedules
    SCHEDULES("snap_sched", "GET /volumes/{vol}/schedule", summary="a volume's snapshot schedule"),
    SCHEDULES(
        "snap_sched",
        "PUT /volumes/{vol}/schedule",
        body="spec",
        only_if="spec",
        summary="set a volume's snapshot schedule",
    ),
    SCHEDULES(
        "snap_sched_tick", "POST /schedules/tick", body="now volume", summary="run the snapshot schedules now"
    ),
    # dedup
    DEDUP("sis_status", "GET /dedup", query="volume", summary="sis status of every volume"),
    DEDUP("sis_savings", "GET /dedup/savings", query="volume", summary="space saved (`df -s`)"),
    DEDUP("sis_settings", "GET /dedup/volumes", summary="every volume's sis settings, by volume name"),
    DEDUP("sis_volume_settings", "GET /dedup/volumes/{volume}", summary="a volume's sis settings"),
    DEDUP(
        "sis_configure",
        "PUT /dedup/volumes/{volume}",
        body="enabled inline schedule",
        summary="change a volume's sis settings",
    ),
    DEDUP(
        "sis_pending",
        "GET /dedup/scans/pending",
        result_key="pending",
        summary="the unfinished scan the next start resumes first",
    ),
    DEDUP(
        "sis_scan",
        "POST /dedup/scans",
        body="volumes full",
        job="dedup_scan",
        single=True,
        summary="start a post-process scan (a job; poll /jobs/{id})",
    ),
    # templates
    TEMPLATES(
        "template_import",
        "POST /templates",
        body="name image memory_mib vcpus os_type kernel initrd cmdline generalize keep",
        status=201,
        summary="import a disk image on the daemon's host as a template (datastore tpl_NAME)",
    ),
    TEMPLATES("template_list", "GET /templates", summary="every template"),
    TEMPLATES("template_show", "GET /templates/{name}", summary="a template and the VMs made from it"),
    TEMPLATES("template_delete", "DELETE /templates/{name}", summary="delete (refused while VMs depend)"),
    # custspecs
    CUSTSPECS(
        "custspec_create",
        "POST /custspecs",
        body="name hostname user ssh_key_file password_hash network runcmd ssh_keys",
        status=201,
        summary="create a customization spec",
    ),
    CUSTSPECS("custspec_list", "GET /custspecs", summary="every customization spec"),
    CUSTSPECS("custspec_show", "GET /custspecs/{name}", summary="a customization spec"),
    CUSTSPECS("custspec_delete", "DELETE /custspecs/{name}", summary="delete (VMs keep their seeds)"),
    # vms
    VMS(
        "vm_provision",
        "POST /vms",
        body="template count name customize connect start igroup parallel on_error nbd tls disk_path",
        job="provision",
        summary="provision COUNT VMs from a template (a job; poll /jobs/{id})",
    ),
    VMS("vm_list", "GET /vms", summary="the VMs Coppice made, with their libvirt state"),
    VMS("vm_show", "GET /vms/{name}", summary="a VM: state, template, base snapshot, own space"),
    VMS(
        "vm_refresh",
        "POST /vms/{name}/refresh",
        body="force",
        summary="discard the VM's changes: a new clone of its base snapshot",
    ),
    VMS(
        "vm_recompose",
        "POST /vms/{name}/recompose",
        body="snapshot force",
        summary="move the VM to another snapshot of its template",
    ),
    VMS(
        "vm_destroy",
        "DELETE /vms/{name}",
        query="force",
        summary="undefine the VM, unmap its LUNs, destroy its clone",
    ),
    # datastores
    DATASTORES("datastore_show", "GET /datastores", query="volume", summary="datastores and VMs"),
    DATASTORES(
        "datastore_clone",
        "POST /datastores/clones",
        body="src snap new register connect name start igroup resignature nbd tls",
        status=201,
        summary="clone a whole datastore from a snapshot; resignature; register every VM on it",
    ),
    DATASTORES(
        "datastore_policy",
        "GET /datastores/policy",
        query="connect",
        summary="a host's resignature policy",
    ),
    DATASTORES(
        "datastore_policy",
        "PUT /datastores/policy",
        body="connect policy",
        only_if="policy",
        summary="set a host's resignature policy (auto, ask, off)",
    ),
    DATASTORES(
        "datastore_resignature",
        "POST /datastores/{volume}/resignature",
        summary="a new signature (snap-XXXXXXXX-<name>), attached",
    ),
    DATASTORES(
        "datastore_rename",
        "PUT /datastores/{volume}/name",
        body="name",
        summary="rename the datastore (the volume keeps its name)",
    ),
    DATASTORES(
        "datastore_attach",
        "POST /datastores/{volume}/attach",
        body="connect",
        summary="attach; a copy is resignatured or refused by the policy",
    ),
    DATASTORES(
        "datastore_register",
        "POST /datastores/{volume}/register",
        body="connect igroup nbd",
        summary="register every VM of an attached datastore",
    ),
]


def of(layer: str | None = None, resource: str | None = None) -> list[Op]:
    """The ops of one layer and/or resource, in table order."""
    return [
        o for o in OPS if (layer is None or o.layer == layer) and (resource is None or o.resource == resource)
    ]


def by_method(layer: str) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = {}
    for o in of(layer):
        out.setdefault(o.method, []).append(o)
    return out


def choose(ops: list[Op], params: dict) -> Op:
    """The op of a method that serves these parameters (see ``only_if``)."""
    for o in ops:
        if o.only_if is not None and params.get(o.only_if) is not None:
            return o
    return next(o for o in ops if o.only_if is None)
