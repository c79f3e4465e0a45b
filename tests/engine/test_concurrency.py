"""Many threads writing, flushing (FUA and FLUSH run without the pool lock)
and checkpointing at once: every write lands, fsck stays clean, and after
a reopen (replay) the content is the same."""

import os
import threading

from coppice.engine import Pool

BS = 4096


def test_threads_write_flush_and_checkpoint(pool_dir):
    # A small page cache and tiny objects force frequent consistency points.
    p = Pool.create(pool_dir, cache_bytes=16 * 8192)
    p.create_volume("v")
    p.create_object("v", "lun", 4 * 256 * BS)
    want = {}
    errors = []

    def worker(t):
        h = p.open_object("v", "lun")
        rnd = __import__("random").Random(t)
        try:
            for i in range(400):
                blk = t * 256 + rnd.randrange(256)
                data = os.urandom(BS)
                h.pwrite(blk * BS, data, fua=(i % 7 == 0))
                want[blk] = data
                if i % 50 == 0:
                    h.flush()
                if i % 97 == 0:
                    p.checkpoint()
                if i == 200 and t == 0:
                    p.create_snapshot("v", "mid")  # a management op among the writes
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    h = p.open_object("v", "lun")
    for blk, data in want.items():
        assert bytes(h.pread(blk * BS, BS)) == data
    assert p.fsck().clean
    # Abandon the pool without a final checkpoint, then reopen: replay.
    p.flush()
    os.close(p._lockfd)
    p.db.close()
    q = Pool.open(pool_dir)
    try:
        h = q.open_object("v", "lun")
        for blk, data in want.items():
            assert bytes(h.pread(blk * BS, BS)) == data
        assert q.fsck().clean
        assert [s.name for s in q.list_snapshots("v")] == ["mid"]
    finally:
        q.close()
