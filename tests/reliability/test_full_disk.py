"""A full file system loses nothing acknowledged and the pool recovers.

On a real tmpfs of a few MiB: writes and flushes until the file system is
full are refused with ENOSPC (NoSpace) and change nothing; every flushed
write reads back, before and after a reopen; fsck is clean; once the file
system has room again (grown, or another file deleted) the same open pool
serves writes. A consistency point that cannot commit (the reserve gone,
the disk filled behind the pool's back) keeps every acknowledged write in
memory and in the intent log, never truncates that log, and commits once
space returns.
"""

import errno
import os

import pytest

from coppice.engine import Pool
from coppice.errors import NoSpace

BS = 4096
CHUNK = 4 * BS


def _write_until_full(h, acked, start, limit):
    """Write+flush CHUNKs from chunk ``start`` on until refused; returns the
    refused chunk's index and the error."""
    for i in range(start, limit):
        data = os.urandom(CHUNK)
        try:
            h.pwrite(i * CHUNK, data)
            h.flush()
        except NoSpace as e:
            return i, e
        acked[i] = data
    raise AssertionError(f"the file system never filled up in {limit - start} writes")


def _check(pool, acked):
    h = pool.open_object("v", "lun")
    lost = [i for i, d in acked.items() if bytes(h.pread(i * CHUNK, CHUNK)) != d]
    assert not lost, f"{len(lost)} acknowledged chunks read back wrong, first {lost[:5]}"


def test_full_file_system_refuses_writes_keeps_acknowledged_ones_and_recovers(small_fs):
    fs = small_fs(8)
    path = os.path.join(fs.path, "pool")
    pool = Pool.create(path)
    try:
        pool.create_volume("v")
        pool.create_object("v", "lun", 64 << 20)
        h = pool.open_object("v", "lun")
        acked = {}
        refused, err = _write_until_full(h, acked, 0, 4096)
        assert err.errno == errno.ENOSPC
        assert len(acked) > 100  # most of the 8 MiB held data
        # The refused write changed nothing; a second try is refused too.
        assert bytes(h.pread(refused * CHUNK, CHUNK)) == bytes(CHUNK)
        with pytest.raises(NoSpace):
            h.pwrite(refused * CHUNK, os.urandom(CHUNK))
        # Overwrites of acknowledged data are refused cleanly too, or land whole.
        for i in list(acked)[:20]:
            data = os.urandom(CHUNK)
            try:
                h.pwrite(i * CHUNK, data)
                h.flush()
                acked[i] = data
            except NoSpace:
                pass
        _check(pool, acked)
        pool.checkpoint()
        assert pool.fsck().clean
        # More room: the same open pool serves again.
        fs.resize(16)
        more, _ = _write_until_full(h, acked, refused, 8192)
        assert more > refused + 50
        _check(pool, acked)
    finally:
        pool.close()
    pool = Pool.open(path)
    try:
        _check(pool, acked)
        rep = pool.fsck()
        assert rep.clean, rep.problems
    finally:
        pool.close()


def test_consistency_point_that_cannot_commit_keeps_acknowledged_writes(small_fs):
    fs = small_fs(12)
    path = os.path.join(fs.path, "pool")
    pool = Pool.create(path)
    closed = False
    try:
        pool.create_volume("v")
        pool.create_object("v", "lun", 16 << 20)
        h = pool.open_object("v", "lun")
        acked = {}
        for i in range(64):  # committed: their blocks are freed by the overwrite below
            acked[i] = os.urandom(CHUNK)
            h.pwrite(i * CHUNK, acked[i])
        pool.checkpoint()
        for i in range(32, 96):  # overwrites and new data, flushed, not committed
            acked[i] = os.urandom(CHUNK)
            h.pwrite(i * CHUNK, acked[i])
        h.flush()
        # The disk fills behind the pool's back and the reserve is gone.
        pool.headroom.spend()
        pool.headroom.arm = lambda: False
        filler = fs.fill()
        for _ in range(2):
            with pytest.raises(NoSpace):
                pool.checkpoint()
            _check(pool, acked)  # still visible after the rollback and reload
        assert os.path.getsize(os.path.join(path, "intent.log")) > 0
        with pytest.raises(NoSpace):
            h.pwrite(200 * CHUNK, os.urandom(CHUNK))
        # A graceful stop cannot commit either: it must keep the log.
        with pytest.raises(NoSpace):
            pool.close()
        closed = True
        assert os.path.getsize(os.path.join(path, "intent.log")) > 0
        # Reopening on the full file system works and replays the log.
        pool = Pool.open(path)
        closed = False
        _check(pool, acked)
        # Room again: writes are served and the consistency point commits;
        # the blocks the overwrites freed are not handed out while the
        # committed metadata still maps them.
        os.unlink(filler)
        h = pool.open_object("v", "lun")
        for i in range(96, 160):
            acked[i] = os.urandom(CHUNK)
            h.pwrite(i * CHUNK, acked[i])
        h.flush()
        pool.checkpoint()
        _check(pool, acked)
        rep = pool.fsck()
        assert rep.clean, rep.problems
        assert os.path.getsize(os.path.join(path, "intent.log")) == 0
    finally:
        if not closed:
            pool.close()
    pool = Pool.open(path)
    try:
        _check(pool, acked)
        assert pool.fsck().clean
    finally:
        pool.close()


def test_management_operation_on_a_full_file_system_changes_nothing_then_works(small_fs):
    fs = small_fs(8)
    path = os.path.join(fs.path, "pool")
    pool = Pool.create(path)
    try:
        pool.create_volume("v")
        pool.create_object("v", "lun", 16 << 20)
        h = pool.open_object("v", "lun")
        acked = {i: os.urandom(CHUNK) for i in range(32)}
        for i, d in acked.items():
            h.pwrite(i * CHUNK, d)
        pool.create_snapshot("v", "s1")
        # Full, reserve gone: a snapshot cannot commit; it is refused whole.
        pool.headroom.spend()
        real_arm = pool.headroom.arm
        pool.headroom.arm = lambda: False
        filler = fs.fill()
        before = pool.dump()
        for _ in range(2):
            with pytest.raises(NoSpace):
                pool.create_snapshot("v", "s2")
            with pytest.raises(NoSpace):
                pool.create_volume("w")
        assert pool.dump() == before
        _check(pool, acked)
        # Room again: the same open pool takes the snapshot.
        os.unlink(filler)
        pool.headroom.arm = real_arm
        pool.create_snapshot("v", "s2")
        assert [s.name for s in pool.list_snapshots("v")] == ["s1", "s2"]
        # Full again but the reserve is there: deleting a snapshot to make
        # room goes through (it is given the reserve's room).
        filler = fs.fill()
        pool.delete_snapshot("v", "s1")
        assert [s.name for s in pool.list_snapshots("v")] == ["s2"]
        os.unlink(filler)
        rep = pool.fsck()
        assert rep.clean, rep.problems
    finally:
        pool.close()
    pool = Pool.open(path)
    try:
        _check(pool, acked)
        assert [s.name for s in pool.list_snapshots("v")] == ["s2"]
        assert pool.fsck().clean
    finally:
        pool.close()
