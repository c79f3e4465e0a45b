"""`df -s` figures add up and match a recomputation from the block maps."""

from collections import defaultdict

from coppice import dedup

from .helpers import BS, make_copies, rand_bytes, used_blocks


def recompute(pool):
    """Independent, naive: every mapping of every dataset, grouped by PBN."""
    maps = defaultdict(list)  # pbn -> [(volume, lineage key)]
    provisioned = defaultdict(int)

    def root(ds):
        while True:
            if ds.kind == "snapshot":
                ds = pool.datasets[ds.volume_id]
            elif ds.origin_id:
                ds = pool.datasets[ds.origin_id]
            else:
                return ds.id

    for v in pool.list_volumes():
        for snap in [None] + [s.name for s in pool.list_snapshots(v.name)]:
            for o in pool.list_objects(v.name, snap):
                provisioned[v.name] += -(-o.size // BS)
                r = root(pool.datasets[o.dataset_id])
                for lbn, pbn, _ in pool.iter_blocks(v.name, o.name, snap):
                    maps[pbn].append((v.name, (r, o.name, lbn)))
    pool_t = {"logical": 0, "physical": len(maps), "clones": 0, "dedup": 0}
    vol = defaultdict(lambda: {"logical": 0, "clones": 0.0, "dedup": 0.0})
    for ms in maps.values():
        m, k = len(ms), len({key for _, key in ms})
        pool_t["logical"] += m
        pool_t["clones"] += m - k
        pool_t["dedup"] += k - 1
        for vname, _ in ms:
            vol[vname]["logical"] += 1
            vol[vname]["clones"] += (m - k) / m
            vol[vname]["dedup"] += (k - 1) / m
    return pool_t, vol, provisioned


def test_savings_add_up_and_match_recomputation(pool):
    # Pool and per-volume numbers: logical = physical + dedup + clones, equal to a naive recount.
    data = rand_bytes(2 << 20, 41)
    make_copies(pool, 3, data, size=4 << 20)
    pool.create_snapshot("v0", "s")
    pool.clone_volume("c", "v0", "s")
    pool.open_object("c", "lun").pwrite(0, rand_bytes(256 << 10, 42))
    pool.open_object("v1", "lun").pwrite(1 << 20, rand_bytes(128 << 10, 43))
    dedup.config.set_enabled(pool, "c", True)
    dedup.scan(pool)
    pool.checkpoint()
    s = dedup.savings(pool)
    p = s["pool"]
    ref, vol, prov = recompute(pool)
    assert p["physical_blocks"] == ref["physical"] == used_blocks(pool)
    assert p["logical_blocks"] == ref["logical"]
    assert p["saved_clones_blocks"] == ref["clones"]
    assert p["saved_dedup_blocks"] == ref["dedup"]
    assert p["logical_blocks"] == p["physical_blocks"] + p["saved_dedup_blocks"] + p["saved_clones_blocks"]
    assert p["provisioned_blocks"] == p["logical_blocks"] + p["saved_zero_blocks"]
    assert p["saved_dedup_blocks"] > 0 and p["saved_clones_blocks"] > 0
    total_phys = 0
    for name, d in s["volumes"].items():
        assert (
            d["logical_blocks"] == d["physical_blocks"] + d["saved_dedup_blocks"] + d["saved_clones_blocks"]
        )
        assert d["logical_blocks"] == vol[name]["logical"]
        assert abs(d["saved_dedup_blocks"] - vol[name]["dedup"]) <= 0.5
        assert abs(d["saved_clones_blocks"] - vol[name]["clones"]) <= 0.5
        assert d["provisioned_blocks"] == prov[name]
        assert d["physical_bytes"] == d["physical_blocks"] * BS
        total_phys += d["physical_blocks"]
    assert abs(total_phys - p["physical_blocks"]) <= len(s["volumes"])  # rounding only
    assert dedup.savings(pool, "c") == s["volumes"]["c"]


def test_clone_sharing_is_not_counted_as_dedup(pool):
    # A clone and a snapshot save space as clones, not as dedup.
    pool.create_volume("m")
    pool.create_object("m", "lun", 1 << 20)
    pool.open_object("m", "lun").pwrite(0, rand_bytes(1 << 20, 44))
    pool.create_snapshot("m", "s")
    pool.clone_volume("c", "m", "s")
    p = dedup.savings(pool)["pool"]
    assert p["saved_dedup_blocks"] == 0
    assert p["saved_clones_blocks"] == 2 * 256
    assert p["physical_blocks"] == 256
