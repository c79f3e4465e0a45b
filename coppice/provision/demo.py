"""The README demo's provisioning part: ``run_demo(pool_dir, console)``.

Contract: on a pool in ``pool_dir`` (created if missing) it builds the tiny
template (guest_image, cached), imports it, provisions a handful of VMs
with a customization spec, boots one of them for real through
``qemu:///system`` (ensure_system_libvirtd) from its clone LUN served by an
in-process NBD server, prints the login banner lines from its serial log
(its own hostname, from its seed), then the ``df -s``-style savings.
Without root (no system libvirt) the VMs are registered with
``test:///default`` and the boot is skipped, saying so. Returns a dict of
what it did. ``console`` is a rich Console (or anything with ``print``).
"""

from __future__ import annotations

import os
import re
import time


def _savings(filer) -> dict:
    try:
        from ..dedup.facade import Dedup

        return Dedup(filer).sis_savings()
    except Exception:
        return filer.df(savings=True)


def run_demo(pool_dir: str, console, count: int = 4, boot: bool = True) -> dict:
    from ..filer.filer import Filer
    from ..nbd.server import NBDServer
    from . import custspec, guest_image, template, vm
    from .provisioner import Provisioner, Target

    out: dict = {}
    f = (
        Filer.open(pool_dir)
        if os.path.exists(os.path.join(pool_dir)) and os.listdir(pool_dir)
        else Filer.create(pool_dir)
    )
    sock = os.path.abspath(pool_dir) + ".nbd.sock"
    srv = NBDServer(f.resolver(), host="127.0.0.1", port=0, unix_path=sock).start()
    uri = "test:///default"
    if boot and os.geteuid() == 0:
        try:
            from .hypervisor import ensure_system_libvirtd

            ensure_system_libvirtd()
            uri = "qemu:///system"
        except Exception as e:
            console.print(f"[yellow]system libvirt unavailable ({e}); registering with test:///default[/]")
    try:
        console.print("[bold]Building the tiny template[/] (Debian cloud kernel + busybox initramfs)...")
        tt = guest_image.build_tiny_template(os.environ.get("COPPICE_GUEST_CACHE"))
        name = "tiny"
        if name not in {t["name"] for t in template.list_(f)}:
            r = template.import_image(
                f, name, tt.disk_image, kernel=tt.kernel, initrd=tt.initrd, cmdline=tt.cmdline
            )
            console.print(
                f"template {name} imported in {r['import_seconds']} s; base snapshot "
                f"{r['volume']}@base; "
                + (
                    f"generalized: {', '.join(r['generalized']['cleared'])}"
                    if r["generalized"].get("done")
                    else f"not generalized: {r['generalized'].get('why')}"
                )
            )
        if "demo" not in {c["name"] for c in custspec.list_(f)}:
            custspec.create(f, "demo", user="ops", runcmd=["echo provisioned by coppice"])
        stem = f"demo{int(time.time()) % 100000}n"
        p = Provisioner(f)
        try:
            t0 = time.perf_counter()
            s = p.provision(
                name,
                count,
                stem + "{n}",
                "demo",
                uri,
                start=False,
                target=Target(host="127.0.0.1", port=srv.address[1]),
            )
            d = s.to_dict()
            console.print(
                f"[bold]{d['created']} VMs provisioned[/] in {time.perf_counter() - t0:.2f} s "
                f"({', '.join(f'{k} {v:.1f} ms' for k, v in d['stage_per_vm_ms'].items())} per VM)"
            )
            for r in s.ok:
                rec = vm.get(f, r.name)
                console.print(
                    f"  {r.name}: clone /vol/{rec['volume']}, LUN IDs {list(rec['lun_ids'].values())}, "
                    f"mac {rec['mac']}"
                )
            out["vms"] = [r.name for r in s.ok]
            if uri == "qemu:///system" and s.ok:
                first = s.ok[0].name
                console.print(f"[bold]Booting {first}[/] (TCG) from its clone over NBD...")
                hv = p.hypervisor(uri)
                hv.start(first)
                hv.wait_for_shutoff(first, timeout=120)
                log = open(vm.get(f, first)["serial_log"], errors="replace").read().replace("\r", "")
                banner = [
                    ln for ln in log.splitlines() if re.match(r"(Coppice guest .* login:|COPPICE-)", ln)
                ]
                for ln in banner:
                    console.print(f"  [green]{ln}[/]")
                out["banner"] = banner
            else:
                console.print("(not root: the boot needs qemu:///system; skipped)")
        finally:
            p.close()
        sv = _savings(f)
        out["savings"] = sv
        pool = sv.get("pool", sv) if isinstance(sv, dict) else {}
        if "logical_bytes" in pool:
            console.print(
                f"[bold]df -s[/]: logical {pool['logical_bytes'] >> 10} KiB stored in "
                f"{pool['physical_bytes'] >> 10} KiB; clones saved {pool.get('saved_clones_bytes', 0) >> 10} KiB, "
                f"thin provisioning {pool.get('saved_zero_bytes', 0) >> 10} KiB"
            )
        else:
            console.print(f"df -s: {pool}")
    finally:
        srv.shutdown()
        f.close()
    return out
