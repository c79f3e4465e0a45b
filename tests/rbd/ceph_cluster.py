"""A throwaway single-node Ceph cluster for the test suite, and a wipe of
a Ceph pool between tests.

Contract: ``start()`` runs scripts/ceph/start-single-node.sh (1 mon, 1
bluestore OSD on a sparse file, auth none, pool size 1, pool ``rbd``; about
5 s) and returns the ceph.conf path; ``stop(conf)`` kills exactly the pids
the start script recorded. Ceph that cannot start is a test FAILURE naming
the log, never a skip. ``wipe(conf, pool)`` removes every RBD namespace,
image, snapshot and trash entry and Coppice's ``coppice.owner`` claim, so the
next test's Coppice pool can claim the Ceph pool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "scripts" / "ceph" / "start-single-node.sh"
STOP = ROOT / "scripts" / "ceph" / "stop-single-node.sh"
NEEDED = ("ceph-mon", "ceph-osd", "ceph", "rbd", "rados", "monmaptool")


class CephStartError(RuntimeError):
    pass


def start() -> str:
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        raise CephStartError(
            f"Ceph tools missing: {', '.join(missing)}; run scripts/install.sh "
            "(ceph-mon ceph-osd ceph-common python3-rados python3-rbd)"
        )
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError as e:
        raise CephStartError(
            f"python3-rados/python3-rbd not importable ({e}): use the Python 3.11 venv "
            "with system site packages that scripts/install.sh makes"
        ) from None
    d = tempfile.mkdtemp(prefix="cph-", dir="/tmp")  # admin socket paths must stay short
    res = subprocess.run([str(START), d], capture_output=True, text=True, timeout=180)
    if res.returncode != 0:
        raise CephStartError(f"Ceph did not start (rc {res.returncode}):\n{res.stderr[-4000:]}")
    conf = res.stdout.strip().splitlines()[-1]
    _watchdog(d)
    subprocess.run(
        ["ceph", "-c", conf, "osd", "set-require-min-compat-client", "mimic"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return conf


def _watchdog(d: str) -> None:
    """Stop the cluster when this process dies without its finalizer (a
    pytest killed by a timeout), so no daemons outlive the test run."""
    script = f'while kill -0 {os.getpid()} 2>/dev/null && [ -d "{d}" ]; do sleep 2; done; [ -d "{d}" ] && "{STOP}" "{d}"'
    subprocess.Popen(
        ["bash", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(conf: str) -> None:
    subprocess.run([str(STOP), str(Path(conf).parent)], capture_output=True, timeout=60)


def wipe(conf: str, pool: str = "rbd") -> None:
    import rados
    import rbd

    c = rados.Rados(conffile=conf)
    c.connect(timeout=15)
    try:
        io = c.open_ioctx(pool)
        r = rbd.RBD()
        spaces = list(r.namespace_list(io))
        ioctxs = {}
        for ns in [""] + spaces:
            i = c.open_ioctx(pool)
            i.set_namespace(ns)
            ioctxs[ns] = i
        # children before parents, across namespaces: pass until nothing is left
        for _ in range(8):
            left = 0
            for i in ioctxs.values():
                for img in r.list2(i):
                    left += 1
                    try:
                        try:
                            with rbd.Image(i, image_id=img["id"]) as im:
                                for s in list(im.list_snaps()):
                                    if s.get("namespace", 0) == 0:
                                        if im.is_protected_snap(s["name"]):
                                            im.unprotect_snap(s["name"])
                                        im.remove_snap(s["name"])
                        except rbd.ImageNotFound:
                            pass  # a clone whose parent went first cannot open; remove still works
                        r.remove(i, img["name"])
                        left -= 1
                    except rbd.ImageBusy:
                        _blocklist_watchers(c, i, img["id"])
                    except rbd.Error:
                        pass
                for t in r.trash_list(i):
                    try:
                        r.trash_remove(i, t["id"], force=True)
                    except rbd.Error:
                        pass
            if not left:
                break
        for ns in spaces:
            for _ in range(20):  # a just-closed client may hold it for a moment
                try:
                    r.namespace_remove(io, ns)
                    break
                except rbd.Error:
                    time.sleep(0.1)
        try:
            io.remove_object("coppice.owner")
        except rados.ObjectNotFound:
            pass
        left = list(r.namespace_list(io))
        if left:
            raise RuntimeError(f"could not wipe Ceph pool {pool}: namespaces {left} remain")
    finally:
        c.shutdown()


def _blocklist_watchers(cluster, ioctx, image_id) -> None:
    """A killed client (kill -9 tests) keeps its watch on an image for ~30 s;
    blocklisting its address ends it now, as Ceph's docs say for dead clients."""
    import json

    import rbd

    with rbd.Image(ioctx, image_id=image_id, read_only=True) as im:
        addrs = [w["addr"] for w in im.watchers_list()]
    for a in addrs:
        cluster.mon_command(json.dumps({"prefix": "osd blocklist", "blocklistop": "add", "addr": a}), b"")


if __name__ == "__main__":  # python -m tests.rbd.ceph_cluster wipe CONF
    import sys

    if sys.argv[1] == "wipe":
        wipe(sys.argv[2], os.environ.get("CEPH_POOL", "rbd"))
