"""The remote façades: the Filer, Provisioning and Dedup APIs of a running daemon.

Contract: ``RemoteFiler``, ``RemoteProvisioning`` and ``RemoteDedup`` have
the methods of their local façades (``coppice.filer.Filer``,
``coppice.provision.facade.Provisioning``, ``coppice.dedup.facade.Dedup``)
that the operation table (``coppice.operations``) serves, with the same
signatures (``tests/api/test_operations.py`` holds them equal) and the
same JSON results; each stub is one ``Daemon.call``. A refused call raises
the error the daemon raised (same class, message and exit code). Long
operations are daemon jobs behind the same interface (``clone_split_steps``
yields ``(done, total)``; ``vm_provision`` and ``sis_scan`` report progress
as the local ones do). What needs the pool in this process (``open_lun``,
``transaction``, ``resolver``) raises ``NotSupported`` naming the way to do
it through the daemon. Host files a call names (an image, a kernel, an SSH
key) are read here and sent (uploads, key lines): the daemon reads no client
paths.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Callable
from contextlib import contextmanager

from .client import Daemon, segment
from .errors import CoppiceError, NotSupported

DEFAULT_IGROUP = "coppice_host"  # the local façades' default (a test holds them equal)


class RemoteFiler:
    """The Filer API of a daemon; see the module docstring."""

    remote = True

    def __init__(self, daemon: Daemon):
        self._daemon = daemon
        self.where = daemon.where

    def close(self) -> None:
        self._daemon.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def daemon(self) -> Daemon:
        return self._daemon

    def health(self) -> dict:
        return self._daemon.request("GET", "/health")

    def daemon_info(self) -> dict:
        return self._daemon.request("GET", "/daemon")

    # ---- the Filer's long operations, as jobs ---------------------------------------
    def clone_split_steps(self, vol: str):
        d = self._daemon
        job = d.request("POST", f"/clones/{segment(vol, 'volume')}/split")
        finished = False
        try:
            for rec in d.follow(job):
                if rec["state"] in ("running", "done") and rec.get("total") is not None:
                    yield rec.get("done") or 0, rec.get("total") or 0
            finished = True
        finally:
            if not finished:  # the caller gave up (Ctrl-C): stop the split as a local one would stop
                try:
                    self.clone_split_stop(vol)
                except CoppiceError:
                    pass

    def clone_split(self, vol: str, progress=None) -> dict:
        for done, total in self.clone_split_steps(vol):
            if progress:
                progress(done, total)
        return self.clone_split_status(vol)

    def clone_split_stop(self, vol: str) -> dict:
        return self._daemon.request("DELETE", f"/clones/{segment(vol, 'volume')}/split")

    def scrub(self, progress=None) -> dict:
        def each(rec):
            if progress and rec.get("total") is not None:
                progress(rec.get("done") or 0, rec.get("total"))

        return self._daemon.finish(self._daemon.request("POST", "/pool/scrub"), each)

    # ---- small files ----------------------------------------------------------------
    def file_write(self, vol: str, name: str, data: bytes) -> None:
        self._daemon.request(
            "PUT",
            f"/volumes/{segment(vol, 'volume')}/files/{segment(name, 'file')}",
            json={"data_base64": base64.b64encode(bytes(data)).decode()},
        )

    def file_read(self, vol: str, name: str, snapshot: str | None = None) -> bytes:
        r = self._daemon.request(
            "GET",
            f"/volumes/{segment(vol, 'volume')}/files/{segment(name, 'file')}",
            params={"snapshot": snapshot},
        )
        return base64.b64decode(r["data_base64"])

    # ---- what needs the pool in this process ------------------------------------------
    def open_lun(self, path: str, initiator=None, allow_offline: bool = False):
        raise NotSupported(
            what="open_lun",
            why=f"the daemon ({self.where}) serves LUNs over NBD; "
            "connect to its NBD socket (POOL/nbd.sock) or port instead",
        )

    def resolver(self):
        raise NotSupported(what="resolver", why="the daemon runs the NBD target itself")

    def on_revoke(self, callback) -> None:
        raise NotSupported(what="on_revoke", why="the daemon's NBD target gets revocations itself")

    @contextmanager
    def transaction(self):
        raise NotSupported(
            what="transaction",
            why="calls over the REST API commit one by one; "
            "stop the daemon to group them, or use a single call that does the whole change",
        )
        yield self  # pragma: no cover

    # ---- the operation table's filer rows ------------------------------------------------
    def pool_info(self) -> dict:
        return self._daemon.call("filer", "pool_info", dict())

    def df(self, volume: str | None = None, savings: bool = False) -> dict:
        return self._daemon.call("filer", "df", dict(volume=volume, savings=savings))

    def fsck(self) -> dict:
        return self._daemon.call("filer", "fsck", dict())

    def dump(self) -> dict:
        return self._daemon.call("filer", "dump", dict())

    def vol_create(self, name, size, guarantee: str = "none", snap_reserve: int | None = None) -> dict:
        return self._daemon.call(
            "filer", "vol_create", dict(name=name, size=size, guarantee=guarantee, snap_reserve=snap_reserve)
        )

    def vol_show(self, name: str | None = None) -> list[dict]:
        return self._daemon.call("filer", "vol_show", dict(name=name))

    def vol_info(self, name: str) -> dict:
        return self._daemon.call("filer", "vol_info", dict(name=name))

    def vol_destroy(self, name: str, force: bool = False, children: bool = False) -> list[str]:
        return self._daemon.call("filer", "vol_destroy", dict(name=name, force=force, children=children))

    def vol_rename(self, old: str, new: str) -> None:
        return self._daemon.call("filer", "vol_rename", dict(old=old, new=new))

    def vol_size(self, name: str, size) -> dict:
        return self._daemon.call("filer", "vol_size", dict(name=name, size=size))

    def vol_options(self, name: str) -> dict:
        return self._daemon.call("filer", "vol_options", dict(name=name))

    def vol_set_option(self, name: str, option: str, value) -> dict:
        return self._daemon.call("filer", "vol_set_option", dict(name=name, option=option, value=value))

    def file_list(self, vol: str, snapshot: str | None = None) -> list[dict]:
        return self._daemon.call("filer", "file_list", dict(vol=vol, snapshot=snapshot))

    def file_delete(self, vol: str, name: str) -> None:
        return self._daemon.call("filer", "file_delete", dict(vol=vol, name=name))

    def snap_create(self, vol: str, name: str) -> dict:
        return self._daemon.call("filer", "snap_create", dict(vol=vol, name=name))

    def snap_list(self, vol: str) -> list[dict]:
        return self._daemon.call("filer", "snap_list", dict(vol=vol))

    def snap_delete(self, vol: str, name: str) -> None:
        return self._daemon.call("filer", "snap_delete", dict(vol=vol, name=name))

    def snap_rename(self, vol: str, old: str, new: str) -> None:
        return self._daemon.call("filer", "snap_rename", dict(vol=vol, old=old, new=new))

    def snap_restore(self, vol: str, name: str) -> dict:
        return self._daemon.call("filer", "snap_restore", dict(vol=vol, name=name))

    def snap_reserve(self, vol: str, percent=None) -> int:
        return self._daemon.call("filer", "snap_reserve", dict(vol=vol, percent=percent))

    def clone_create(
        self, new: str, parent: str, snap: str, remap: bool = False, schedule: str | None = None
    ) -> dict:
        return self._daemon.call(
            "filer", "clone_create", dict(new=new, parent=parent, snap=snap, remap=remap, schedule=schedule)
        )

    def clone_show(self) -> list[dict]:
        return self._daemon.call("filer", "clone_show", dict())

    def clone_split_status(self, vol: str) -> dict:
        return self._daemon.call("filer", "clone_split_status", dict(vol=vol))

    def clone_split_estimate(self, vol: str) -> dict:
        return self._daemon.call("filer", "clone_split_estimate", dict(vol=vol))

    def lun_create(self, path: str, size, ostype: str = "linux", comment: str = "") -> dict:
        return self._daemon.call(
            "filer", "lun_create", dict(path=path, size=size, ostype=ostype, comment=comment)
        )

    def lun_show(
        self, path: str | None = None, volume: str | None = None, snapshots: bool = False
    ) -> list[dict]:
        return self._daemon.call("filer", "lun_show", dict(path=path, volume=volume, snapshots=snapshots))

    def lun_info(self, path: str) -> dict:
        return self._daemon.call("filer", "lun_info", dict(path=path))

    def lun_destroy(self, path: str, force: bool = False) -> None:
        return self._daemon.call("filer", "lun_destroy", dict(path=path, force=force))

    def lun_resize(self, path: str, size, force: bool = False) -> dict:
        return self._daemon.call("filer", "lun_resize", dict(path=path, size=size, force=force))

    def lun_online(self, path: str) -> None:
        return self._daemon.call("filer", "lun_online", dict(path=path))

    def lun_offline(self, path: str) -> None:
        return self._daemon.call("filer", "lun_offline", dict(path=path))

    def lun_rename(self, path: str, new_path: str) -> None:
        return self._daemon.call("filer", "lun_rename", dict(path=path, new_path=new_path))

    def lun_comment(self, path: str, text: str) -> None:
        return self._daemon.call("filer", "lun_comment", dict(path=path, text=text))

    def lun_clone_create(self, new_path: str, parent_path: str, snap: str) -> dict:
        return self._daemon.call(
            "filer", "lun_clone_create", dict(new_path=new_path, parent_path=parent_path, snap=snap)
        )

    def igroup_create(self, name: str, initiators=(), ostype: str = "linux", protocol: str = "iscsi") -> dict:
        return self._daemon.call(
            "filer", "igroup_create", dict(name=name, initiators=initiators, ostype=ostype, protocol=protocol)
        )

    def igroup_show(self, name: str | None = None) -> list[dict]:
        return self._daemon.call("filer", "igroup_show", dict(name=name))

    def igroup_destroy(self, name: str, force: bool = False) -> None:
        return self._daemon.call("filer", "igroup_destroy", dict(name=name, force=force))

    def igroup_add(self, name: str, initiator: str) -> dict:
        return self._daemon.call("filer", "igroup_add", dict(name=name, initiator=initiator))

    def igroup_remove(self, name: str, initiator: str) -> dict:
        return self._daemon.call("filer", "igroup_remove", dict(name=name, initiator=initiator))

    def igroup_rename(self, old: str, new: str) -> None:
        return self._daemon.call("filer", "igroup_rename", dict(old=old, new=new))

    def igroup_set(self, name: str, ostype: str) -> dict:
        return self._daemon.call("filer", "igroup_set", dict(name=name, ostype=ostype))

    def lun_map(self, path: str, igroup: str, lun_id: int | None = None) -> int:
        return self._daemon.call("filer", "lun_map", dict(path=path, igroup=igroup, lun_id=lun_id))

    def lun_unmap(self, path: str, igroup: str) -> None:
        return self._daemon.call("filer", "lun_unmap", dict(path=path, igroup=igroup))

    def lun_maps(self) -> list[dict]:
        return self._daemon.call("filer", "lun_maps", dict())

    def snap_sched(self, vol: str, spec: str | None = None) -> dict:
        return self._daemon.call("filer", "snap_sched", dict(vol=vol, spec=spec))

    def snap_sched_tick(self, now: _dt.datetime | None = None, volume: str | None = None) -> list[dict]:
        return self._daemon.call("filer", "snap_sched_tick", dict(now=now, volume=volume))


def _upload(daemon: Daemon, path: str | None) -> str | None:
    # The daemon reads no client paths: a local file is uploaded, refused here as it
    # would be without a daemon (a FIFO, a link out of place).
    if not path:
        return None
    from .provision.import_dir import ImportPolicy

    with ImportPolicy.local().open(path, "file"):
        pass
    return daemon.upload(path)


class RemoteProvisioning:
    """The Provisioning API of a daemon; see the module docstring."""

    def __init__(self, daemon: Daemon):
        self._daemon = daemon

    def close(self) -> None:
        pass  # the session's daemon connection is closed with its RemoteFiler

    def template_import(
        self,
        name: str,
        image: str,
        memory_mib: int = 256,
        vcpus: int = 1,
        os_type: str = "linux",
        kernel: str | None = None,
        initrd: str | None = None,
        cmdline: str | None = None,
        generalize: bool = True,
        keep: list[str] | None = None,
    ) -> dict:
        return self._daemon.call(
            "provision",
            "template_import",
            dict(
                name=name,
                image=_upload(self._daemon, image),
                memory_mib=memory_mib,
                vcpus=vcpus,
                os_type=os_type,
                kernel=_upload(self._daemon, kernel),
                initrd=_upload(self._daemon, initrd),
                cmdline=cmdline,
                generalize=generalize,
                keep=list(keep or ()),
            ),
        )

    def custspec_create(
        self,
        name: str,
        hostname: str = "vm-name",
        user: str | None = None,
        ssh_key_file: str | None = None,
        password_hash: str | None = None,
        network: str = "dhcp",
        runcmd: list[str] | None = None,
        ssh_keys: list[str] | None = None,
    ) -> dict:
        keys = list(ssh_keys or [])
        if ssh_key_file:  # the daemon reads no client paths: the key lines go in the request
            from .provision.custspec import read_ssh_key

            keys += read_ssh_key(ssh_key_file)
        return self._daemon.call(
            "provision",
            "custspec_create",
            dict(
                name=name,
                hostname=hostname,
                user=user,
                ssh_keys=keys,
                password_hash=password_hash,
                network=network,
                runcmd=list(runcmd or []),
            ),
        )

    def vm_provision(
        self,
        template: str,
        name: str,
        count: int = 1,
        customize: str | None = None,
        connect: str | None = None,
        start: bool = False,
        igroup: str = DEFAULT_IGROUP,
        parallel: int = 1,
        on_error: str = "stop",
        nbd: str | None = None,
        tls: bool | None = None,
        progress: Callable[[int, int, dict], None] | None = None,
        disk_path: str = "nbd",
    ) -> dict:
        def each(rec):
            if progress is not None:
                progress(int(rec.get("done") or 0), count, rec.get("stage_totals") or {})

        params = dict(
            template=template,
            name=name,
            count=count,
            customize=customize,
            connect=connect,
            start=start,
            igroup=igroup,
            parallel=parallel,
            on_error=on_error,
            nbd=nbd,
            tls=tls,
            disk_path=disk_path,
        )
        return self._daemon.call("provision", "vm_provision", params, progress=each)

    def template_list(self) -> list[dict]:
        return self._daemon.call("provision", "template_list", dict())

    def template_show(self, name: str) -> dict:
        return self._daemon.call("provision", "template_show", dict(name=name))

    def template_delete(self, name: str) -> None:
        return self._daemon.call("provision", "template_delete", dict(name=name))

    def custspec_list(self) -> list[dict]:
        return self._daemon.call("provision", "custspec_list", dict())

    def custspec_show(self, name: str) -> dict:
        return self._daemon.call("provision", "custspec_show", dict(name=name))

    def custspec_delete(self, name: str) -> None:
        return self._daemon.call("provision", "custspec_delete", dict(name=name))

    def vm_list(self) -> list[dict]:
        return self._daemon.call("provision", "vm_list", dict())

    def vm_show(self, name: str) -> dict:
        return self._daemon.call("provision", "vm_show", dict(name=name))

    def vm_refresh(self, name: str, force: bool = False) -> dict:
        return self._daemon.call("provision", "vm_refresh", dict(name=name, force=force))

    def vm_recompose(self, name: str, snapshot: str, force: bool = False) -> dict:
        return self._daemon.call("provision", "vm_recompose", dict(name=name, snapshot=snapshot, force=force))

    def vm_destroy(self, name: str, force: bool = False) -> dict:
        return self._daemon.call("provision", "vm_destroy", dict(name=name, force=force))

    def datastore_show(self, volume: str | None = None) -> list[dict]:
        return self._daemon.call("provision", "datastore_show", dict(volume=volume))

    def datastore_clone(
        self,
        src: str,
        snap: str,
        new: str,
        register: bool = False,
        connect: str | None = None,
        name: str = "{vm}-{clone}",
        start: bool = False,
        igroup: str = DEFAULT_IGROUP,
        resignature: bool | None = None,
        nbd: str | None = None,
        tls: bool | None = None,
    ) -> dict:
        return self._daemon.call(
            "provision",
            "datastore_clone",
            dict(
                src=src,
                snap=snap,
                new=new,
                register=register,
                connect=connect,
                name=name,
                start=start,
                igroup=igroup,
                resignature=resignature,
                nbd=nbd,
                tls=tls,
            ),
        )

    def datastore_policy(self, connect: str | None = None, policy: str | None = None) -> dict:
        return self._daemon.call("provision", "datastore_policy", dict(connect=connect, policy=policy))

    def datastore_resignature(self, volume: str) -> dict:
        return self._daemon.call("provision", "datastore_resignature", dict(volume=volume))

    def datastore_rename(self, volume: str, name: str) -> dict:
        return self._daemon.call("provision", "datastore_rename", dict(volume=volume, name=name))

    def datastore_attach(self, volume: str, connect: str | None = None) -> dict:
        return self._daemon.call("provision", "datastore_attach", dict(volume=volume, connect=connect))

    def datastore_register(
        self,
        volume: str,
        connect: str | None = None,
        igroup: str = DEFAULT_IGROUP,
        nbd: str | None = None,
    ) -> list[dict]:
        return self._daemon.call(
            "provision", "datastore_register", dict(volume=volume, connect=connect, igroup=igroup, nbd=nbd)
        )


class RemoteDedup:
    """The Dedup API of a daemon; see the module docstring."""

    def __init__(self, daemon: Daemon):
        self._daemon = daemon
        self._bs = None

    def close(self) -> None:
        pass  # the session's daemon connection is closed with its RemoteFiler

    @property
    def block_size(self) -> int:
        if self._bs is None:
            self._bs = self._daemon.request("GET", "/pool")["block_size"]
        return self._bs

    def sis_scan(
        self,
        volumes: list[str] | None = None,
        full: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        resume: bool = False,
    ) -> dict:
        """As ``Dedup.sis_scan``, as a daemon job (``should_stop`` and ``resume`` are
        the daemon's own: Ctrl-C here stops the job, which pauses the scan)."""
        d = self._daemon
        job = d.request("POST", "/dedup/scans", json={"volumes": volumes, "full": full})
        rec = job
        try:
            for rec in d.follow(job):
                for phase, p in (rec.get("phases") or {}).items():  # every phase, even one polled past
                    if progress is not None and p.get("total") is not None:
                        progress(phase, p.get("done") or 0, p["total"])
        except KeyboardInterrupt:
            try:
                d.cancel(job["id"])
            except CoppiceError:
                pass
            raise
        if rec["state"] != "done":  # stopped by someone else or by a daemon shutdown: paused, resumable
            raise KeyboardInterrupt
        return rec["result"]

    def sis_status(self, volume: str | None = None):
        return self._daemon.call("dedup", "sis_status", dict(volume=volume))

    def sis_savings(self, volume: str | None = None) -> dict:
        return self._daemon.call("dedup", "sis_savings", dict(volume=volume))

    def sis_settings(self) -> dict:
        return self._daemon.call("dedup", "sis_settings", dict())

    def sis_volume_settings(self, volume: str) -> dict:
        return self._daemon.call("dedup", "sis_volume_settings", dict(volume=volume))

    def sis_configure(
        self,
        volume: str,
        enabled: bool | None = None,
        inline: bool | None = None,
        schedule: str | None = None,
    ) -> dict:
        return self._daemon.call(
            "dedup", "sis_configure", dict(volume=volume, enabled=enabled, inline=inline, schedule=schedule)
        )

    def sis_pending(self) -> dict | None:
        return self._daemon.call("dedup", "sis_pending", dict())
