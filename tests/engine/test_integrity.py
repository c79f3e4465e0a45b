"""Checksums on every block: corruption is found by scrub and a read of a
corrupt block fails loudly, naming where; other blocks still read fine."""

import os

import pytest

from coppice.engine import BlockCorrupt, Pool

BS = 4096


def test_flipped_byte_is_caught_by_scrub_and_read(pool, pool_dir):
    pool.create_volume("v")
    pool.create_object("v", "lun0", 64 * BS)
    h = pool.open_object("v", "lun0")
    data = os.urandom(64 * BS)
    h.pwrite(0, data)
    pool.create_snapshot("v", "s")
    pool.checkpoint()
    # Which physical block holds logical block 10?
    pbn = next(p for lbn, p, _ in pool.iter_blocks("v", "lun0") if lbn == 10)
    with open(os.path.join(pool_dir, "data", "blocks"), "r+b") as f:
        f.seek(pbn * BS + 123)
        b = f.read(1)
        f.seek(pbn * BS + 123)
        f.write(bytes([b[0] ^ 0x40]))
    rep = pool.scrub()
    assert not rep.clean
    assert [e["pbn"] for e in rep.errors] == [pbn]
    where = {(r["dataset"], r["object"], r["offset"]) for r in rep.errors[0]["references"]}
    # Shared with the snapshot: both places are named.
    assert where == {("v", "lun0", 10 * BS), ("v@s", "lun0", 10 * BS)}
    with pytest.raises(BlockCorrupt) as ei:
        h.pread(10 * BS, BS)
    msg = str(ei.value)
    assert "volume v" in msg and "lun0" in msg and str(10 * BS) in msg
    assert ei.value.errno == 5  # EIO for the NBD target
    # A read spanning it fails too; the neighbours alone read fine.
    with pytest.raises(BlockCorrupt):
        h.pread(8 * BS, 4 * BS)
    assert bytes(h.pread(0, 10 * BS)) == data[: 10 * BS]
    assert bytes(h.pread(11 * BS, 53 * BS)) == data[11 * BS :]


def test_scrub_clean_pool_reports_every_block_once(pool):
    pool.create_volume("v")
    pool.create_object("v", "a", 100 * BS)
    pool.open_object("v", "a").pwrite(0, os.urandom(100 * BS))
    pool.create_snapshot("v", "s")
    pool.clone_volume("c", "v", "s")
    rep = pool.scrub()
    assert rep.clean
    assert rep.blocks_checked == 100  # shared blocks are read once


def test_corrupt_metadata_page_is_detected(pool, pool_dir):
    pool.create_volume("v")
    pool.create_object("v", "a", 100 * BS)
    pool.open_object("v", "a").pwrite(0, os.urandom(100 * BS))
    pool.close()
    import sqlite3

    db = sqlite3.connect(os.path.join(pool_dir, "pool.db"))
    pid, data = db.execute("SELECT id, data FROM pages WHERE level=0").fetchone()
    bad = bytearray(data)
    bad[7] ^= 1
    db.execute("UPDATE pages SET data=? WHERE id=?", (bytes(bad), pid))
    db.commit()
    db.close()
    p = Pool.open(pool_dir)
    try:
        with pytest.raises(Exception) as ei:
            p.open_object("v", "a").pread(0, BS)
        assert "corrupt" in str(ei.value).lower()
    finally:
        p.close()
