"""Provisioning: the one Python API of the provisioner, over an open Filer.

Contract: templates, customization specs, VMs and datastores as methods
``template_*``, ``custspec_*``, ``vm_*``, ``datastore_*`` — the provision
rows of ``coppice.operations``. ``coppice.remote.RemoteProvisioning`` has
the same methods with the same signatures and results over a daemon, so a
caller never knows which one it holds. Results are JSON-able dicts and
lists. Each method calls the provisioner's public functions and adds
nothing of its own but the choice of libvirt connections and NBD target:

* ``hypervisors``: an object with ``resolve(uri)``, ``get(uri)`` and
  ``for_uris(uris)`` (the daemon's shared connections to the URIs it was
  configured with; any other URI is refused); None: each call opens and
  closes its own, to ``connect`` or else ``local_uri``'s default
  (COPPICE_CONNECT, else qemu:///system).
* ``default_target(nbd, tls)``: where VMs reach their disks (the daemon
  answers its own NBD listener when ``nbd`` is not given); None:
  ``Target.parse(nbd, tls)``. With ``disk_path="rbd"`` the VMs' disks are
  RBD images QEMU opens itself (``RbdTarget``, from the filer's
  ``direct_disk_access()``); a pool without one refuses it
  (``DiskPathUnsupported``) before anything is made.
* ``import_policy()``: (``ImportPolicy``, ``UploadArea``) for host files a
  call names (the daemon's --import-dir and its uploads; an upload serves
  one request); None: the caller's own files (``import_dir``).

``vm_provision`` reports ``progress(done, total, stage_totals)`` once with
``done=0`` after every check passed (so a caller can draw a bar knowing
that nothing was refused) and after each VM.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_IGROUP = "coppice_host"


class Provisioning:
    def __init__(
        self,
        filer,
        hypervisors=None,
        default_target: Callable | None = None,
        import_policy: Callable | None = None,
    ):
        self.filer = filer
        self._hypervisors = hypervisors
        self._default_target = default_target
        self._import_policy = import_policy

    def close(self) -> None:
        pass  # the filer and the shared connections belong to whoever passed them in

    # ---- helpers ---------------------------------------------------------------------
    def _target(self, nbd: str | None, tls: bool | None):
        if self._default_target is not None:
            return self._default_target(nbd, tls)
        from .provisioner import Target

        return Target.parse(nbd, tls=bool(tls))

    def _disk_target(self, disk_path: str, nbd: str | None, tls: bool | None):
        from ..errors import InvalidArgument

        if disk_path == "nbd":
            return self._target(nbd, tls)
        if disk_path != "rbd":
            raise InvalidArgument(detail=f"disk path {disk_path!r} is invalid: use nbd or rbd")
        access = self.filer.direct_disk_access()
        if not access or access.get("protocol") != "rbd":
            from .provisioning_errors import DiskPathUnsupported

            raise DiskPathUnsupported(disk_path=disk_path, backend=getattr(self.filer.backend, "label", "?"))
        from .records import RbdTarget

        return RbdTarget.from_access(access)

    def _uri(self, connect: str | None) -> str:
        if self._hypervisors is not None:
            return self._hypervisors.resolve(connect)
        from .hypervisor import local_uri

        return local_uri(connect)

    def _factory(self):
        return self._hypervisors.get if self._hypervisors is not None else None

    def _states(self, uris) -> dict | None:
        return self._hypervisors.for_uris(uris) if self._hypervisors is not None else None

    # ---- templates -------------------------------------------------------------------
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
        from . import template

        policy, uploads = self._import_policy() if self._import_policy else (None, None)
        try:
            return template.import_image(
                self.filer,
                name,
                image,
                memory_mib=memory_mib,
                vcpus=vcpus,
                os_type=os_type,
                kernel=kernel,
                initrd=initrd,
                cmdline=cmdline,
                generalize=generalize,
                keep=list(keep or ()),
                policy=policy,
            )
        finally:
            for p in (image, kernel, initrd) if uploads is not None else ():
                uploads.discard(p)  # an upload serves one request

    def template_list(self) -> list[dict]:
        from . import template

        return template.list_(self.filer)

    def template_show(self, name: str) -> dict:
        from . import template

        return template.show(self.filer, name)

    def template_delete(self, name: str) -> None:
        from . import template

        template.delete(self.filer, name)

    # ---- customization specs -----------------------------------------------------------
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
        """``ssh_key_file`` is read under the import policy; ``ssh_keys`` are key lines."""
        from . import custspec

        policy = self._import_policy()[0] if self._import_policy else None
        return custspec.create(
            self.filer,
            name,
            hostname=hostname,
            user=user,
            ssh_key_file=ssh_key_file,
            password_hash=password_hash,
            network=network,
            runcmd=list(runcmd or []),
            ssh_keys=list(ssh_keys or []),
            policy=policy,
        )

    def custspec_list(self) -> list[dict]:
        from . import custspec

        return custspec.list_(self.filer)

    def custspec_show(self, name: str) -> dict:
        from . import custspec

        return custspec.show(self.filer, name)

    def custspec_delete(self, name: str) -> None:
        from . import custspec

        custspec.delete(self.filer, name)

    # ---- VMs -------------------------------------------------------------------------
    def vm_provision_check(
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
        disk_path: str = "nbd",
    ) -> None:
        """Everything ``vm_provision`` checks before it makes anything."""
        from ..errors import InvalidArgument
        from .provisioner import Provisioner

        self._disk_target(disk_path, nbd, tls)
        if on_error not in ("stop", "skip"):
            raise InvalidArgument(detail=f"on_error {on_error!r} is invalid: use stop or skip")
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 64:
            raise InvalidArgument(detail=f"parallel {parallel!r} is invalid: use 1 to 64 workers")
        p = Provisioner(self.filer, hypervisor_factory=self._factory())
        try:
            p.plan(template, count, name, customize, self._uri(connect), igroup)
        finally:
            p.close()

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
        """Provision COUNT VMs named by the pattern; the provisioner's summary.
        ``disk_path``: ``nbd`` (disks served by Coppice's NBD target) or ``rbd``
        (libvirt RBD network disks straight to Ceph; an rbd pool only)."""
        from .provisioner import STAGES, Provisioner

        target = self._disk_target(disk_path, nbd, tls)
        connect = self._uri(connect)
        self.vm_provision_check(template, name, count, customize, connect, start, igroup, parallel, on_error)
        totals: dict[str, float] = {}
        done = [0]

        def each(r):
            for k, v in r.stages.items():
                totals[k] = totals.get(k, 0.0) + v
            done[0] += 1
            if progress is not None:
                progress(done[0], count, {k: totals[k] for k in STAGES if k in totals})

        if progress is not None:
            progress(0, count, {})
        p = Provisioner(self.filer, hypervisor_factory=self._factory())
        try:
            s = p.provision(
                template,
                count,
                name,
                customize,
                connect,
                start,
                igroup,
                parallel,
                on_error,
                target,
                progress=each,
            )
        finally:
            p.close()
        return s.to_dict()

    def vm_list(self) -> list[dict]:
        from . import registry, vm

        uris = [rec.get("uri") or self._uri(None) for _, rec in registry.items(self.filer, registry.VM)]
        return vm.list_(self.filer, hypervisors=self._states(uris))

    def vm_show(self, name: str) -> dict:
        from . import vm

        rec = vm.get(self.filer, name)
        return vm.show(self.filer, name, hypervisors=self._states([rec.get("uri") or self._uri(None)]))

    def vm_refresh(self, name: str, force: bool = False) -> dict:
        from . import vm

        return vm.refresh(self.filer, name, force=force, hypervisor_factory=self._factory())

    def vm_recompose(self, name: str, snapshot: str, force: bool = False) -> dict:
        from . import vm

        return vm.recompose(self.filer, name, snapshot, force=force, hypervisor_factory=self._factory())

    def vm_destroy(self, name: str, force: bool = False) -> dict:
        from . import vm

        return vm.destroy(self.filer, name, force=force, hypervisor_factory=self._factory())

    # ---- datastores ----------------------------------------------------------------------
    def datastore_show(self, volume: str | None = None) -> list[dict]:
        from . import datastore

        return datastore.show(self.filer, volume)

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
        """Clone a datastore from a snapshot; a copy is resignatured by the host's
        policy (``resignature=True``: whatever the policy); register its VMs."""
        from . import dsclone

        connect = self._uri(connect)
        return dsclone.clone_datastore(
            self.filer,
            src,
            snap,
            new,
            register=register,
            uri=connect,
            igroup=igroup,
            target=self._target(nbd, tls),
            name_pattern=name,
            resignature=resignature,
            start=start,
            hv=self._hypervisors.get(connect) if register and self._hypervisors is not None else None,
        )

    def datastore_policy(self, connect: str | None = None, policy: str | None = None) -> dict:
        """The resignature policy of a host connection ({connect, policy}); set it
        first when ``policy`` is given."""
        from . import dsclone

        connect = self._uri(connect)
        if policy is not None:
            dsclone.set_policy(self.filer, connect, policy)
        return {"connect": connect, "policy": dsclone.get_policy(self.filer, connect)}

    def datastore_resignature(self, volume: str) -> dict:
        from . import datastore

        return datastore.resignature(self.filer, volume)

    def datastore_rename(self, volume: str, name: str) -> dict:
        from . import datastore

        return datastore.rename(self.filer, volume, name)

    def datastore_attach(self, volume: str, connect: str | None = None) -> dict:
        from . import datastore, dsclone

        return datastore.attach(self.filer, volume, dsclone.get_policy(self.filer, self._uri(connect)))

    def datastore_register(
        self,
        volume: str,
        connect: str | None = None,
        igroup: str = DEFAULT_IGROUP,
        nbd: str | None = None,
    ) -> list[dict]:
        from . import dsclone

        connect = self._uri(connect)
        hv = self._hypervisors.get(connect) if self._hypervisors is not None else None
        return dsclone.register_datastore(self.filer, volume, connect, igroup, self._target(nbd, None), hv=hv)
