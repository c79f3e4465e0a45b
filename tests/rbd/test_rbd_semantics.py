"""The rbd backend's semantics through the Filer API, on a real Ceph cluster:
readable layout, snapshots at one instant across LUNs, clones O(1) as RBD
clone v2 children, busy snapshots, split = flatten, restore = rollback, the
documented differences (thin only, no dedup, no per-block volume budget),
one owner per Ceph pool, and fsck comparing both sides."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from coppice.backend import BackendUnsupported, ThinOnly
from coppice.backend.rbd import CephPoolOwned
from coppice.filer.errors import SnapshotHasClones


def rbd_cli(conf, *args):
    r = subprocess.run(["rbd", "-c", conf, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def ls_l(conf):
    return json.loads(rbd_cli(conf, "ls", "-l", "--format", "json", "rbd"))


def test_layout_is_readable_with_rbd_ls(rbd_filer, ceph_conf):
    """One image per LUN in the pool's default namespace (libvirt names an
    RBD disk pool/image only), named coppice.VOLUME.LUN; renames of LUNs and
    volumes rename the images, so the names stay true."""
    f = rbd_filer
    f.vol_create("fvol_master", "1g")
    f.lun_create("/vol/fvol_master/lun0", "64m")
    f.lun_create("/vol/fvol_master/lun1.img", "32m")
    f.snap_create("fvol_master", "clone_base_snapshot")
    f.clone_create("fvol_clone1", "fvol_master", "clone_base_snapshot")
    assert rbd_cli(ceph_conf, "namespace", "ls", "rbd").split() == []  # nothing but images
    assert {(i["image"], i.get("snapshot")) for i in ls_l(ceph_conf) if "parent" not in i} == {
        ("coppice.fvol_master.lun0", None),
        ("coppice.fvol_master.lun1.img", None),
        ("coppice.fvol_master.lun0", "clone_base_snapshot"),
        ("coppice.fvol_master.lun1.img", "clone_base_snapshot"),
    }
    clone = [i for i in ls_l(ceph_conf) if "parent" in i]
    assert {(i["image"], i["parent"]["image"], i["parent"]["snapshot"]) for i in clone} == {
        ("coppice.fvol_clone1.lun0", "coppice.fvol_master.lun0", "clone_base_snapshot"),
        ("coppice.fvol_clone1.lun1.img", "coppice.fvol_master.lun1.img", "clone_base_snapshot"),
    }
    # clone LUNs get new serials, as on the engine
    serials = {x["path"]: x["serial"] for x in f.lun_show()}
    assert serials["/vol/fvol_clone1/lun0"] != serials["/vol/fvol_master/lun0"]
    f.lun_rename("/vol/fvol_master/lun1.img", "/vol/fvol_master/data")
    f.vol_rename("fvol_clone1", "desk7")
    f.lun_destroy("/vol/fvol_master/lun0")  # its snapshot still holds it: hidden, not gone
    names = {i["image"] for i in ls_l(ceph_conf) if not i.get("snapshot")}
    hidden = {n for n in names if n.startswith("coppice.~deleted.")}
    assert names - hidden == {"coppice.fvol_master.data", "coppice.desk7.lun0", "coppice.desk7.lun1.img"}
    assert len(hidden) == 1
    assert f.fsck()["clean"], f.fsck()["problems"]
    # a name already taken in Ceph by an image no LUN owns: refused, nothing changed
    rbd_cli(ceph_conf, "create", "--size", "1M", "rbd/coppice.fvol_master.taken")
    from coppice.backend.rbd import ImageNameTaken

    with pytest.raises(ImageNameTaken, match="rbd rm rbd/coppice.fvol_master.taken"):
        f.lun_create("/vol/fvol_master/taken", "8m")
    assert "/vol/fvol_master/taken" not in {x["path"] for x in f.lun_show()}
    with pytest.raises(ImageNameTaken):
        f.lun_rename("/vol/fvol_master/data", "/vol/fvol_master/taken")
    assert {x["path"] for x in f.lun_show() if x["path"].startswith("/vol/fvol_master/")} == {
        "/vol/fvol_master/data"
    }
    rbd_cli(ceph_conf, "rm", "--no-progress", "rbd/coppice.fvol_master.taken")
    # destroying a volume hides its images at once and removes them after the commit
    f.vol_destroy("desk7", force=True)
    assert not any(i["image"].startswith("coppice.desk7.") for i in ls_l(ceph_conf))
    assert f.fsck()["clean"], f.fsck()["problems"]


def test_restore_brings_back_a_lun_whose_name_a_new_lun_took(rbd_filer, ceph_conf):
    f = rbd_filer
    f.vol_create("v", "1g")
    f.lun_create("/vol/v/a", "8m")
    d = f.open_lun("/vol/v/a")
    d.pwrite(0, b"old".ljust(4096, b"\0"))
    d.close()
    f.snap_create("v", "s")
    f.lun_destroy("/vol/v/a")
    f.lun_create("/vol/v/a", "8m")  # a new image under the old name; the old one hidden
    d = f.open_lun("/vol/v/a")
    d.pwrite(0, b"new".ljust(4096, b"\0"))
    d.close()
    f.snap_restore("v", "s")
    d = f.open_lun("/vol/v/a")
    assert bytes(d.pread(0, 3)) == b"old"
    d.close()
    names = {i["image"] for i in ls_l(ceph_conf) if not i.get("snapshot")}
    assert names == {"coppice.v.a"}, names
    assert f.fsck()["clean"], f.fsck()["problems"]


def test_snapshot_is_one_instant_across_the_volumes_luns(rbd_filer):
    """A writer stamps sequence n into LUN a, then into LUN b, each write
    acknowledged before the next: at one instant b <= a <= b + 1. Snapshots
    taken while it runs must all show that."""
    f = rbd_filer
    f.vol_create("v", "1g")
    f.lun_create("/vol/v/a", "8m")
    f.lun_create("/vol/v/b", "8m")
    a, b = f.open_lun("/vol/v/a"), f.open_lun("/vol/v/b")
    stop = threading.Event()

    def writer():
        n = 0
        while not stop.is_set():
            n += 1
            stamp = n.to_bytes(8, "little") * 512
            a.pwrite(0, stamp)
            b.pwrite(0, stamp)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for i in range(5):
            f.snap_create("v", f"s{i}")
    finally:
        stop.set()
        t.join()
    a.close()
    b.close()
    seen = []
    for i in range(5):
        va, vb = (
            int.from_bytes(bytes(d.pread(0, 8)), "little")
            for d in (f.open_lun(f"/vol/v/.snapshot/s{i}/a"), f.open_lun(f"/vol/v/.snapshot/s{i}/b"))
        )
        assert vb <= va <= vb + 1, (i, va, vb)
        seen.append(va)
    assert seen[-1] > 0


def test_busy_snapshot_split_as_flatten_then_free(rbd_filer):
    f = rbd_filer
    f.vol_create("m", "1g")
    f.lun_create("/vol/m/lun0", "16m")
    d = f.open_lun("/vol/m/lun0")
    d.pwrite(0, b"golden" * 1000)
    d.close()
    f.snap_create("m", "base")
    f.clone_create("c", "m", "base")
    before = f.dump()
    with pytest.raises(SnapshotHasClones, match="clone c depends on it"):
        f.snap_delete("m", "base")
    assert f.dump() == before
    assert f.snap_list("m")[0]["busy"] and f.clone_split_estimate("c")["bytes"] == 6000
    steps = list(f.clone_split_steps("c"))
    assert steps[-1][0] == steps[-1][1] and len(steps) > 2  # flatten's progress, as a job reports it
    assert f.clone_split_status("c")["state"] == "done"
    assert not f.snap_list("m")[0]["busy"]
    f.snap_delete("m", "base")
    d = f.open_lun("/vol/c/lun0")
    assert bytes(d.pread(0, 6)) == b"golden"
    d.close()
    assert f.fsck()["clean"], f.fsck()["problems"]


def test_restore_is_rollback_and_says_what_it_costs(rbd_filer):
    f = rbd_filer
    f.vol_create("v", "1g")
    f.lun_create("/vol/v/l", "8m")
    f.lun_create("/vol/v/gone", "8m")
    d = f.open_lun("/vol/v/l")
    d.pwrite(0, b"before")
    f.snap_create("v", "s")
    d.pwrite(0, b"after!")
    d.close()
    f.lun_destroy("/vol/v/gone")
    f.lun_create("/vol/v/new", "8m")
    r = f.snap_restore("v", "s")
    assert "rollback" in r["note"] and "16m" in r["note"] and "volume's size" in r["note"]
    d = f.open_lun("/vol/v/l")
    assert bytes(d.pread(0, 6)) == b"before"
    d.close()
    assert sorted(x["path"] for x in f.lun_show()) == ["/vol/v/gone", "/vol/v/l"]
    assert f.fsck()["clean"], f.fsck()["problems"]


def test_documented_differences_are_refused_and_change_nothing(rbd_filer, rbd_pool):
    f = rbd_filer
    f.vol_create("v", "16m", snap_reserve=0)
    f.lun_create("/vol/v/l", "64m")
    before = f.dump()
    with pytest.raises(ThinOnly, match="thin only"):
        f.vol_create("thick", "1g", guarantee="volume")
    with pytest.raises(ThinOnly, match="thin only"):
        f.vol_set_option("v", "guarantee", "volume")
    from coppice import dedup

    with pytest.raises(BackendUnsupported, match="no block deduplication"):
        dedup.config.set_enabled(f.pool, "v", True)
    assert f.dump() == before
    # no per-block volume budget on RBD: a thin LUN may be written past the
    # volume's size (the engine refuses with VolumeFull; docs/rbd.md)
    d = f.open_lun("/vol/v/l")
    d.pwrite(32 << 20, b"z" * (1 << 20))
    d.close()
    assert f.df("v")["volumes"][0]["used"] >= 1 << 20


def test_df_reports_rbd_allocation_and_clone_sharing(rbd_filer):
    f = rbd_filer
    f.vol_create("m", "1g")
    f.lun_create("/vol/m/l", "64m")
    d = f.open_lun("/vol/m/l")
    d.pwrite(0, b"a" * (8 << 20))
    d.close()
    f.snap_create("m", "s")
    f.clone_create("c", "m", "s")
    rows = {r["volume"]: r for r in f.df(savings=True)["volumes"]}
    assert rows["m"]["used"] == 8 << 20
    # the clone maps its parent's 8 MiB without owning any of it
    assert rows["c"]["used"] == 8 << 20 and rows["c"]["saved_clones"] == 8 << 20


def test_a_second_coppice_pool_is_refused_naming_the_owner(rbd_filer, ceph_conf, tmp_path):
    from coppice.filer import Filer

    with pytest.raises(CephPoolOwned, match=rbd_filer.pool.path):
        Filer.create(str(tmp_path / "p2"), backend="rbd", ceph_conf=ceph_conf, ceph_pool="rbd")
    assert not (tmp_path / "p2").exists()  # a refused create leaves nothing behind
    rbd_filer.vol_create("still_mine", "1g")


def test_fsck_compares_both_sides(rbd_filer, ceph_conf):
    f = rbd_filer
    f.vol_create("v", "1g")
    f.lun_create("/vol/v/l", "8m")
    f.lun_create("/vol/v/k", "8m")
    f.snap_create("v", "s")
    assert f.fsck()["clean"]
    rbd_cli(ceph_conf, "create", "--size", "1M", "rbd/coppice.v.stray")
    rbd_cli(ceph_conf, "create", "--size", "1M", "rbd/not_coppice")  # another user's image: not ours
    rbd_cli(ceph_conf, "snap", "rm", "rbd/coppice.v.k@s")
    rbd_cli(ceph_conf, "snap", "rm", "rbd/coppice.v.l@s")
    rbd_cli(ceph_conf, "rm", "--no-progress", "rbd/coppice.v.l")
    problems = f.fsck()["problems"]
    assert any("/vol/v/l" in p and "missing" in p for p in problems), problems
    assert any("stray" in p and "belongs to no LUN" in p for p in problems), problems
    assert any("v@s LUN k" in p and "no RBD snapshot s" in p for p in problems), problems
    assert not any("not_coppice" in p for p in problems), problems


def test_cli_pool_create_rbd_as_the_issue_shows(ceph_conf, ceph_pool, tmp_path):
    from tests.api.conftest import run_cli

    p = str(tmp_path / "pool")
    bad = run_cli(
        p, "pool", "create", p, "--backend", "rbd", "--ceph-conf", ceph_conf, "--ceph-pool", "nosuch"
    )
    assert bad.returncode != 0 and "pool does not exist" in bad.stderr and not (tmp_path / "pool").exists()
    r = run_cli(
        p, "pool", "create", p, "--backend", "rbd", "--ceph-conf", ceph_conf, "--ceph-pool", ceph_pool
    )
    assert r.returncode == 0 and "Ceph pool rbd" in r.stdout, r.stderr
    for args in (
        ("vol", "create", "fvol_master", "2g"),
        ("lun", "create", "-s", "64m", "-t", "linux", "/vol/fvol_master/lun0"),
        ("snap", "create", "fvol_master", "clone_base_snapshot"),
        ("vol", "clone", "create", "fvol_clone1", "-b", "fvol_master", "clone_base_snapshot"),
    ):
        r = run_cli(p, *args)
        assert r.returncode == 0, (args, r.stderr)
    r = run_cli(p, "sis", "on", "/vol/fvol_master")
    assert r.returncode != 0 and "no block deduplication" in r.stderr + r.stdout
    r = run_cli(p, "fsck")
    assert r.returncode == 0 and "clean" in r.stdout, r.stdout + r.stderr


def test_a_device_dropped_with_writes_in_flight_does_not_deadlock(rbd_filer):
    """librbd completes writes on its own threads: a LUN device dropped
    without close() while its writes are queued must finish in the dropping
    thread (this deadlocked librbd's io_context once)."""
    f = rbd_filer
    f.vol_create("v", "1g")
    f.lun_create("/vol/v/l", "8m")
    for i in range(200):
        f.open_lun("/vol/v/l").pwrite(i * 4096, bytes([i % 251 + 1]) * 4096)
    d = f.open_lun("/vol/v/l")
    assert all(bytes(d.pread(i * 4096, 1)) == bytes([i % 251 + 1]) for i in range(200))
    d.close()
