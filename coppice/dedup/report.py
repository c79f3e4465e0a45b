"""Space savings (`df -s`): what is logically stored, what it physically costs,
and what clones/snapshots and deduplication saved.

Contract: ``savings(pool, volume=None) -> dict`` walks every block map of
the pool (volumes and snapshots), so the figures are exact at the moment of
the call; it changes nothing. Memory is bounded: mappings go through a
temporary SQLite file with a capped cache, grouped there.

Definitions (blocks; every ``*_bytes`` is blocks x block size):

* a **mapping** is one (object, lbn) -> pbn entry in a volume or snapshot;
* ``logical``  = mappings (what the data would cost if nothing were shared);
* ``physical`` = distinct PBNs referenced (pool) — for a volume, each PBN's
  cost split evenly over its m mappings (1/m each), so volumes add up to the
  pool;
* a PBN with m mappings saves m - 1 blocks. Its mappings fall into k
  *lineages* (root volume of the clone/snapshot family, object name, lbn):
  mappings in one lineage share by snapshot or clone, the others by
  deduplication. So ``saved_clones`` = m - k and ``saved_dedup`` = k - 1
  (per mapping: (m-k)/m and (k-1)/m);
* hence, exactly: ``logical = physical + saved_dedup + saved_clones``;
* ``saved_zero`` = provisioned blocks - logical: blocks never written or
  written as zeros, which a thin pool never stores;
  ``provisioned = logical + saved_zero``.

A volume's figures include its snapshots (they are part of what the volume
costs). Pool ``physical`` equals the engine's used blocks (a test checks it).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile

import xxhash

from .index import CACHE_KIB, s64


def _lineage_root(pool, ds_id: int) -> int:
    ds = pool.datasets[ds_id]
    seen = 0
    while seen < 10000:
        seen += 1
        if ds.kind == "snapshot":
            ds = pool.datasets[ds.volume_id]
        elif ds.origin_id is not None and ds.origin_id in pool.datasets:
            ds = pool.datasets[ds.origin_id]
        else:
            return ds.id
    return ds.id


def _empty(bs: int) -> dict:
    return {
        "block_size": bs,
        "provisioned_blocks": 0,
        "logical_blocks": 0,
        "physical_blocks": 0,
        "saved_dedup_blocks": 0,
        "saved_clones_blocks": 0,
        "saved_zero_blocks": 0,
    }


def _finish(d: dict) -> dict:
    bs = d["block_size"]
    for k in ("provisioned", "logical", "physical", "saved_dedup", "saved_clones", "saved_zero"):
        d[f"{k}_bytes"] = d[f"{k}_blocks"] * bs
    saved = d["saved_dedup_blocks"] + d["saved_clones_blocks"]
    d["saved_blocks"] = saved
    d["saved_bytes"] = saved * bs
    d["percent_saved"] = round(100.0 * saved / d["logical_blocks"], 1) if d["logical_blocks"] else 0.0
    d["percent_saved_dedup"] = (
        round(100.0 * d["saved_dedup_blocks"] / d["logical_blocks"], 1) if d["logical_blocks"] else 0.0
    )
    return d


def savings(pool, volume: str | None = None) -> dict:
    """{'pool': {...}, 'volumes': {name: {...}}} — or just the one volume's
    dict when ``volume`` is given. See the module docstring for the fields."""
    bs = pool.block_size
    d = os.path.join(pool.path, "dedup")
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="df-", suffix=".tmp.db", dir=d)
    os.close(fd)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.execute("PRAGMA temp_store=FILE")
        db.execute("CREATE TABLE m (pbn INTEGER, vol INTEGER, lin INTEGER)")
        vols = {v.id: v.name for v in pool.list_volumes()}
        per = {name: _empty(bs) for name in vols.values()}
        pool_tot = _empty(bs)
        for vid, vname in vols.items():
            sets = [(None, pool.list_objects(vname))]
            sets += [(s.name, pool.list_objects(vname, s.name)) for s in pool.list_snapshots(vname)]
            for snap, objs in sets:
                for o in objs:
                    root = _lineage_root(pool, o.dataset_id)
                    nb = -(-o.size // bs)
                    per[vname]["provisioned_blocks"] += nb
                    lin_base = f"{root}\0{o.name}\0".encode()
                    batch = []
                    for lbn, pbn, _ in pool.iter_blocks(vname, o.name, snap):
                        batch.append(
                            (pbn, vid, s64(xxhash.xxh3_64_intdigest(lin_base + lbn.to_bytes(8, "little"))))
                        )
                        if len(batch) >= 8192:
                            db.executemany("INSERT INTO m VALUES (?,?,?)", batch)
                            batch.clear()
                    db.executemany("INSERT INTO m VALUES (?,?,?)", batch)
        db.execute("CREATE INDEX m_pbn ON m(pbn, lin)")
        db.execute(
            "CREATE TEMP TABLE g AS SELECT pbn, COUNT(*) AS m, COUNT(DISTINCT lin) AS k FROM m GROUP BY pbn"
        )
        db.execute("CREATE INDEX g_pbn ON g(pbn)")
        row = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(m), 0), COALESCE(SUM(m - k), 0), COALESCE(SUM(k - 1), 0) FROM g"
        ).fetchone()
        pool_tot["physical_blocks"], pool_tot["logical_blocks"] = row[0], row[1]
        pool_tot["saved_clones_blocks"], pool_tot["saved_dedup_blocks"] = row[2], row[3]
        for vid, n, clones, dedup in db.execute(
            "SELECT m.vol, COUNT(*), SUM(CAST(g.m - g.k AS REAL) / g.m), SUM(CAST(g.k - 1 AS REAL) / g.m) "
            "FROM m JOIN g USING (pbn) GROUP BY m.vol"
        ):
            d = per[vols[vid]]
            d["logical_blocks"] = n
            d["saved_clones_blocks"] = round(clones)
            d["saved_dedup_blocks"] = round(dedup)
            # Rounded so the volume's own numbers add up exactly.
            d["physical_blocks"] = n - d["saved_clones_blocks"] - d["saved_dedup_blocks"]
        for d in per.values():
            d["saved_zero_blocks"] = d["provisioned_blocks"] - d["logical_blocks"]
            pool_tot["provisioned_blocks"] += d["provisioned_blocks"]
            _finish(d)
        pool_tot["saved_zero_blocks"] = pool_tot["provisioned_blocks"] - pool_tot["logical_blocks"]
        _finish(pool_tot)
    finally:
        db.close()
        os.unlink(tmp)
    if volume is not None:
        pool.volume(volume)  # VolumeNotFound when it is not there
        return per[volume]
    return {"pool": pool_tot, "volumes": per}
