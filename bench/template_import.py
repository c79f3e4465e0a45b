"""Template import with and without offline generalization, same image, same run.

    .venv/bin/python bench/template_import.py --image GOLDEN.raw [--kernel F --initrd F] [--runs N]

Prints the wall time of `template import --no-generalize` (the baseline: the
image's bytes into a thin LUN, snapshots, records) beside `template import`
(the same plus one libguestfs appliance over Coppice's own NBD target), and
libguestfs' own share. The appliance runs once per import, never per VM:
provisioning N VMs from the template costs the same either way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True, help="a golden VM's disk image (any qemu-img format)")
    ap.add_argument("--kernel")
    ap.add_argument("--initrd")
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()

    from coppice.filer.filer import Filer
    from coppice.provision import template

    d = tempfile.mkdtemp(prefix="coppice-bench-import-", dir="/var/tmp")
    f = Filer.create(os.path.join(d, "pool"))
    plain, gen, appliance = [], [], []
    try:
        for i in range(a.runs):
            t = time.monotonic()
            template.import_image(f, f"p{i}", a.image, kernel=a.kernel, initrd=a.initrd, generalize=False)
            plain.append(time.monotonic() - t)
            t = time.monotonic()
            r = template.import_image(f, f"g{i}", a.image, kernel=a.kernel, initrd=a.initrd)
            gen.append(time.monotonic() - t)
            appliance.append(r["generalized"]["seconds"])
            print(f"run {i + 1}: --no-generalize {plain[-1]:.2f} s, generalized {gen[-1]:.2f} s "
                  f"(libguestfs {appliance[-1]:.2f} s, {len(r['generalized']['cleared'])} files cleared, "
                  f"accel {r['generalized'].get('accel', '-')})")  # fmt: skip
    finally:
        f.close()
        shutil.rmtree(d, ignore_errors=True)
    mp, mg = statistics.median(plain), statistics.median(gen)
    print(f"median: --no-generalize {mp:.2f} s | generalized {mg:.2f} s | ratio {mg / mp:.1f}x | "
          f"appliance {statistics.median(appliance):.2f} s once per template, 0 per VM")  # fmt: skip


if __name__ == "__main__":
    main()
