"""Damaged metadata is found and named; a damaged pool is a one-line error.

A corrupt block-map page is reported by scrub (with the object whose map
runs through it) and by fsck (by page id, in a handful of lines, not
hundreds of "allocated but unreferenced" blocks). A damaged pool.db or a
missing data file makes the real CLI print one line and exit with the
error's code, changing nothing; never a traceback.
"""

import os
import sqlite3
import subprocess
import sys

from coppice.engine import Pool

BS = 4096
NBLOCKS = 3 * 512  # three leaves under one interior page


def _make(pool_dir):
    p = Pool.create(pool_dir)
    p.create_volume("v")
    p.create_object("v", "a", NBLOCKS * BS)
    p.create_object("v", "b", 8 * BS)
    p.open_object("v", "a").pwrite(0, os.urandom(NBLOCKS * BS))
    p.open_object("v", "b").pwrite(0, os.urandom(8 * BS))
    p.close()


def _corrupt_second_leaf(pool_dir) -> int:
    db = sqlite3.connect(os.path.join(pool_dir, "pool.db"))
    pid, data = db.execute("SELECT id, data FROM pages WHERE level=0 ORDER BY id LIMIT 1 OFFSET 1").fetchone()
    bad = bytearray(data)
    bad[100] ^= 0x10
    db.execute("UPDATE pages SET data=? WHERE id=?", (bytes(bad), pid))
    db.commit()
    db.close()
    return pid


def _cli(pool_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "coppice.cli.main", "--pool", pool_dir, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


def test_corrupt_block_map_page_is_named_by_scrub_and_fsck(pool_dir):
    _make(pool_dir)
    pid = _corrupt_second_leaf(pool_dir)
    p = Pool.open(pool_dir)
    try:
        rep = p.scrub()
        assert not rep.clean
        pages = [e for e in rep.errors if "page" in e]
        assert [e["page"] for e in pages] == [pid]
        assert {(r["dataset"], r["object"]) for r in pages[0]["references"]} == {("v", "a")}
        f = p.fsck()
        assert not f.clean
        assert f.corrupt_pages == [pid]
        assert any(f"page {pid}" in m and "object a of volume v" in m for m in f.problems), f.problems
        assert len(f.problems) <= 3, f.problems  # the page, one summary line: not 512 leaked blocks
    finally:
        p.close()
    for cmd in ("fsck", "scrub"):
        r = _cli(pool_dir, cmd)
        assert r.returncode == 8, (cmd, r.stdout, r.stderr)
        assert str(pid) in r.stdout and "Traceback" not in r.stderr, (cmd, r.stdout, r.stderr)
        assert len(r.stdout.splitlines()) <= 5, r.stdout


def test_intact_pool_fsck_and_scrub_are_clean(pool_dir):
    _make(pool_dir)
    p = Pool.open(pool_dir)
    try:
        assert p.fsck().clean and p.fsck().corrupt_pages == []
        assert p.scrub().clean
    finally:
        p.close()


def _one_line_error(r, *words):
    assert r.returncode == 8, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_damaged_pool_db_is_a_one_line_error(pool_dir):
    _make(pool_dir)
    db = os.path.join(pool_dir, "pool.db")
    with open(db, "r+b") as f:
        f.write(b"not a database at all" * 10)
    before = open(db, "rb").read()
    r = _cli(pool_dir, "vol", "show")
    _one_line_error(r, "damaged", "pool.db")
    assert open(db, "rb").read() == before  # nothing changed


def test_malformed_pool_db_page_is_a_one_line_error(pool_dir):
    _make(pool_dir)
    with open(os.path.join(pool_dir, "pool.db"), "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(8192))
    _one_line_error(_cli(pool_dir, "vol", "show"), "damaged")


def test_missing_data_file_is_a_one_line_error(pool_dir):
    _make(pool_dir)
    os.unlink(os.path.join(pool_dir, "data", "blocks"))
    _one_line_error(_cli(pool_dir, "lun", "show"), "damaged", "data/blocks", "missing")
    assert not os.path.exists(os.path.join(pool_dir, "data", "blocks"))  # not silently recreated empty
