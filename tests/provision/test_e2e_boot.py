"""THE end-to-end proof: the tiny template imported, 3 VMs provisioned with a
customization spec through qemu:///system, booted for real from clone LUNs
served by Coppice's NBD target; each guest prints its own hostname from its
seed and writes a marker to its own disk, and nowhere else."""

import os
import re
import uuid

import pytest

from coppice.filer.filer import Filer
from coppice.nbd.server import NBDServer
from coppice.provision import custspec, template, vm
from coppice.provision import guest_image as gi
from coppice.provision.provisioner import Provisioner, Target

pytestmark = pytest.mark.slow  # needs root: qemu:///system (a missing daemon fails, never skips)


def _read(sock, export, offset, length):
    import nbd

    h = nbd.NBD()
    try:
        h.connect_uri(f"nbd+unix:///{export}?socket={sock}")
        return bytes(h.pread(length, offset))
    finally:
        h.shutdown()


def test_three_vms_boot_from_their_clones(tiny_template, system_libvirt, workdir):
    # 3 VMs boot, each prints its own hostname (= VM name) and writes its marker to its own clone only
    f = Filer.create(os.path.join(workdir, "pool"))
    sock = os.path.join(workdir, "nbd.sock")
    srv = NBDServer(f.resolver(), host="127.0.0.1", port=0, unix_path=sock).start()
    names = []
    try:
        t = tiny_template
        template.import_image(
            f, "tiny", t.disk_image, kernel=t.kernel, initrd=t.initrd, cmdline=t.cmdline, memory_mib=256
        )
        custspec.create(f, "e2e", user="ops", runcmd=["echo provisioned"])
        stem = f"e2e{uuid.uuid4().hex[:4]}n"
        p = Provisioner(f, state_dir=os.path.join(workdir, "state"))
        s = p.provision(
            "tiny",
            3,
            stem + "{n}",
            "e2e",
            "qemu:///system",
            start=True,
            parallel=3,
            target=Target(host="127.0.0.1", port=srv.address[1]),
        )
        names = [r.name for r in s.ok]
        assert len(names) == 3, s.to_dict()["failed"]
        for n in names:
            system_libvirt.wait_for_shutoff(n, timeout=120)
        markers = {}
        for n in names:
            rec = vm.get(f, n)
            log = open(rec["serial_log"], errors="replace").read()
            assert f"COPPICE-HOSTNAME={n}\n" in log.replace("\r", ""), log[-2000:]
            assert f"Coppice guest {n} login:" in log
            assert "COPPICE-MARKER-WRITTEN" in log
            assert "COPPICE-MACHINE-ID=none" in log, "the template's machine-id reached a clone"
            iid = re.search(r"COPPICE-INSTANCE=(\S+)", log).group(1)
            assert iid == rec["instance_id"]
            raw = _read(sock, f"/vol/{rec['volume']}/vm0.disk0", gi.MARKER_OFFSET, gi.MARKER_SIZE)
            markers[n] = raw.split(b"\0", 1)[0].decode()
            assert markers[n] == f"COPPICE-MARKER {n} {iid}\n"
        assert len(set(markers.values())) == 3
        for lun in ("/vol/tpl_tiny/vm0.disk0", "/vol/tpl_tiny/.snapshot/base/vm0.disk0"):
            assert _read(sock, lun, gi.MARKER_OFFSET, gi.MARKER_SIZE) == b"\0" * gi.MARKER_SIZE
        golden = open(t.disk_image, "rb").read(gi.IDENTITY_OFFSET)
        assert _read(sock, "/vol/tpl_tiny/.snapshot/imported/vm0.disk0", 0, gi.IDENTITY_OFFSET) == golden
        for n in names:
            assert vm.show(f, n)["own_bytes"] <= 64 * 1024  # the marker sector, nothing more
    finally:
        for n in names:
            try:
                vm.destroy(f, n, force=True)
            except Exception:
                system_libvirt.remove(n)
        srv.shutdown()
        f.close()
