#!/usr/bin/env python3
"""Boot the tiny Coppice guest once through qemu:///system, as the tests do.

Builds (or reuses) the tiny template, copies its disk, serves the copy with
qemu-nbd, writes a NoCloud seed for HOSTNAME, defines and starts a TCG domain,
waits for it to power off, prints its serial console and the marker it wrote.
Needs root (it starts libvirtd by hand when it is not running).

    .venv/bin/python scripts/boot-tiny-guest.py [HOSTNAME] [--keep DIR]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from coppice.provision.domain_xml import (
    DirectBoot,
    Disk,
    DomainSpec,
    FileSource,
    NbdSource,
    render_domain_xml,
)  # noqa: E402
from coppice.provision.guest_image import build_tiny_template, read_marker  # noqa: E402
from coppice.provision.hypervisor import Hypervisor, ensure_system_libvirtd  # noqa: E402
from coppice.provision.seed import SeedConfig, build_seed_iso  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hostname", nargs="?", default="coppice-demo")
    ap.add_argument("--cache", default="/var/cache/coppice/guest")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    args = ap.parse_args()

    t0 = time.monotonic()
    tpl = build_tiny_template(args.cache)
    print(f"template: {tpl.disk_image} (kernel {tpl.kernel_version}) in {time.monotonic() - t0:.1f} s")
    work = args.keep or tempfile.mkdtemp(prefix="coppice-boot-", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    root, seed, log = f"{work}/root.raw", f"{work}/seed.iso", f"{work}/serial.log"
    subprocess.run(["cp", "--sparse=always", tpl.disk_image, root], check=True)
    os.chmod(root, 0o644)
    iid = f"iid-{uuid.uuid4()}"
    build_seed_iso(SeedConfig(instance_id=iid, hostname=args.hostname), seed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nbd_log = open(f"{work}/qemu-nbd.log", "wb")  # the readiness probe makes it complain once
    nbd = subprocess.Popen(
        [
            "qemu-nbd",
            "-f",
            "raw",
            "-t",
            "-x",
            "root",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--cache=none",
            root,
        ],
        stderr=nbd_log,
    )
    name = f"coppice-boot-{args.hostname}-{uuid.uuid4().hex[:6]}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        ensure_system_libvirtd()
        with Hypervisor.open("qemu:///system") as hv:
            hv.define(
                render_domain_xml(
                    DomainSpec(
                        name=name,
                        boot=DirectBoot(tpl.kernel, tpl.initrd, tpl.cmdline),
                        disks=[
                            Disk("vda", NbdSource("root", port=port)),
                            Disk("vdb", FileSource(seed), readonly=True),
                        ],
                        serial_log=log,
                    )
                )
            )
            try:
                t1 = time.monotonic()
                hv.start(name)
                hv.wait_for_shutoff(name, 120)
                took = time.monotonic() - t1
            finally:
                hv.remove(name)
    finally:
        nbd.terminate()
        nbd.wait()
    print(open(log, errors="replace").read())
    marker = read_marker(root)
    print(f"start to shut-off: {took:.1f} s; marker on its disk: {marker!r}")
    if not args.keep:
        subprocess.run(["rm", "-rf", work])
    return 0 if marker == f"COPPICE-MARKER {args.hostname} {iid}" else 1


if __name__ == "__main__":
    sys.exit(main())
