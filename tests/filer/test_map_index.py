"""The filer's LUN map index stays exactly equal to a full recount from the
pool under any sequence of operations: maps, unmaps, online/offline, LUN and
volume renames, clones (remapped or colliding), SnapRestore, destroys,
igroup renames and destroys, transactions that roll back, reopening the
pool, and a process killed with SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coppice.errors import CoppiceError
from coppice.filer import Filer, lun_map

VOLS = ("v0", "v1", "v2")
LUNS = ("a", "b", "c")
IGROUPS = ("g0", "g1", "g2")


class Boom(Exception):
    pass


def recount_lowest(f, igroup):
    used = {i for (g, i) in lun_map.full_index(f) if g == igroup}
    return next(i for i in range(lun_map.MAX_LUN_ID + 2) if i not in used)


def assert_index_exact(f):
    idx = lun_map.index_of(f)
    assert idx.as_dict() == lun_map.full_index(f)
    assert idx.as_dict(online_only=True) == lun_map.full_index(f, online_only=True)
    for g in IGROUPS:
        assert idx.lowest_free(g) == recount_lowest(f, g)
        assert idx.free_count(g) == lun_map.MAX_LUN_ID + 1 - len(
            {i for (h, i) in lun_map.full_index(f) if h == g}
        )
    listed = sorted(
        (lun_map.lun_path(v, o.name), m["igroup"], int(m["lun_id"]), bool(o.meta.get("online", True)))
        for v, o in lun_map.active_luns(f)
        for m in o.meta.get("maps") or []
    )
    assert sorted((m["path"], m["igroup"], m["lun_id"], m["online"]) for m in f.lun_maps()) == listed


def snapshot_of_index(f):
    return sorted((g, i, p) for (g, i), ps in lun_map.index_of(f).as_dict().items() for p in ps)


def apply(f, op, a, b, c):
    """One operation; refusals (CoppiceError) are part of the game."""
    v, w = VOLS[a % 3], VOLS[b % 3]
    lun, lun2 = LUNS[b % 3], LUNS[c % 3]
    g = IGROUPS[c % 3]
    path = f"/vol/{v}/{lun}"
    if op == "vol":
        f.vol_create(v, "64m")
        for n in LUNS:
            f.lun_create(f"/vol/{v}/{n}", "1m")
    elif op == "lun":
        f.lun_create(path, "1m")
    elif op == "map":
        f.lun_map(path, g, None if a % 2 else b)
    elif op == "unmap":
        f.lun_unmap(path, g)
    elif op == "offline":
        f.lun_offline(path)
    elif op == "online":
        f.lun_online(path)
    elif op == "lun_rename":
        f.lun_rename(path, f"/vol/{v}/{lun2}")
    elif op == "lun_destroy":
        f.lun_destroy(path, force=True)
    elif op == "snap":
        f.snap_create(v, f"s{c}")
    elif op == "clone":
        f.clone_create(w, v, f"s{c}", remap=bool(a % 2))
    elif op == "restore":
        f.snap_restore(v, f"s{c}")
    elif op == "vol_rename":
        f.vol_rename(v, w)
    elif op == "vol_destroy":
        f.vol_destroy(v, force=True, children=True)
    elif op == "igroup":
        f.igroup_create(g, [f"h{c}"])
    elif op == "igroup_rename":
        f.igroup_rename(g, IGROUPS[a % 3])
    elif op == "igroup_destroy":
        f.igroup_destroy(g, force=True)
    elif op == "rollback":
        # several changes in one transaction, then a failure: all undone
        with f.transaction():
            f.lun_map(path, g)
            f.lun_offline(path)
            f.lun_rename(path, f"/vol/{v}/{lun2}")
            raise Boom()
    elif op == "partial":
        # a refused call inside a transaction that goes on and commits
        with f.transaction():
            f.lun_map(path, g, 7)
            try:
                f.lun_map(f"/vol/{v}/{lun2}", g, 7)
            except CoppiceError:
                pass
            f.lun_map(f"/vol/{v}/{lun2}", g)


# weights: building ops often enough that the pool stays populated
OPS = (
    ("map",) * 6
    + ("unmap", "offline", "online") * 2
    + ("lun", "vol", "snap", "clone", "clone", "restore", "igroup") * 2
    + ("lun_rename", "lun_destroy", "vol_rename", "vol_destroy", "igroup_rename", "igroup_destroy")
    + ("rollback", "partial", "reopen")
)
SETUP = [("igroup", 0, 0, i) for i in range(3)] + [("vol", 0, 0, 0), ("vol", 1, 0, 0)]

steps = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)),
    min_size=30,
    max_size=60,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_index_equals_recount_under_random_operations(ops):
    base = tempfile.mkdtemp(prefix="coppice-test-mapidx-", dir="/var/tmp")
    path = os.path.join(base, "pool")
    f = Filer.create(path)
    try:
        for step in SETUP + ops:
            if step[0] == "reopen":
                before = snapshot_of_index(f)
                f.close()
                f = Filer.open(path)
                assert snapshot_of_index(f) == before
            else:
                try:
                    apply(f, *step)
                except (CoppiceError, Boom):
                    pass
            assert_index_exact(f)
    finally:
        f.close()
        shutil.rmtree(base, ignore_errors=True)


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from coppice.errors import CoppiceError
    from coppice.filer import Filer
    from coppice.filer import lun_map
    sys.path.insert(0, {tests!r})
    from filer.test_map_index import SETUP, apply, snapshot_of_index

    f = Filer.create({path!r})
    import random
    rnd = random.Random({seed})
    ops = ("map", "map", "unmap", "offline", "online", "snap", "clone", "restore", "lun_rename", "vol_rename")
    for step in SETUP + [(rnd.choice(ops), rnd.randrange(6), rnd.randrange(6), rnd.randrange(6))
                         for _ in range(40)]:
        try:
            apply(f, *step)
        except CoppiceError:
            pass
    print(json.dumps(snapshot_of_index(f)), flush=True)
    time.sleep(600)  # killed here, the pool never closed
    """
)


def test_index_after_kill9_equals_the_committed_state(pool_dir):
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in (1, 2):
        path = f"{pool_dir}{seed}"
        code = CHILD.format(tests=tests_dir, path=path, seed=seed)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        assert line, "the child printed no index"
        expect = [tuple(x) for x in json.loads(line)]
        assert expect, "the child mapped nothing: the test would prove little"
        f = Filer.open(path)
        try:
            assert snapshot_of_index(f) == expect
            assert_index_exact(f)
        finally:
            f.close()
