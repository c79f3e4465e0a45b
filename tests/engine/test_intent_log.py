"""Intent-log appends are all or nothing: a short write is continued, a
failed one (ENOSPC midway) is cut back off, so no later record ever lands
behind a torn one (replay stops at the first torn record)."""

import errno
import os

import pytest

from coppice.engine import Pool, fileio
from coppice.errors import NoSpace

BS = 4096


class FailingFiles(fileio.Files):
    """The intent log's next append writes 20 bytes and then fails with
    ENOSPC (armed by ``fail_next``); ``calls`` counts the data file's
    pwrites and the log's appends."""

    def __init__(self):
        self.fail_next = False
        self.calls = {"data": 0, "log": 0}

    def open(self, path, append=False, create=True):
        f = fileio.File(path, append, create)
        files = self
        if path.endswith("intent.log"):
            real = f.append_all

            def append_all(data):
                files.calls["log"] += 1
                if files.fail_next:
                    files.fail_next = False
                    os.write(f.fd, bytes(data)[:20])
                    raise OSError(errno.ENOSPC, "No space left on device")
                real(data)

            f.append_all = append_all
        else:
            real_w = f.pwrite_all

            def pwrite_all(mv, off):
                files.calls["data"] += 1
                real_w(mv, off)

            f.pwrite_all = pwrite_all
        return f


def _crash(p: Pool) -> None:
    """Drop the pool as kill -9 would: no checkpoint, no close (its file
    descriptors are released as the process's would be)."""
    p.db.close()
    p.data.close()
    p.log.close()
    os.close(p._lockfd)


def test_failed_append_is_cut_back_and_later_records_replay(pool_dir):
    files = FailingFiles()
    p = Pool.create(pool_dir, files=files)
    p.create_volume("v")
    p.create_object("v", "lun", 64 * BS)
    h = p.open_object("v", "lun")
    h.pwrite(0, b"a" * BS)
    size = os.path.getsize(os.path.join(pool_dir, "intent.log"))
    files.fail_next = True
    with pytest.raises(NoSpace):
        h.pwrite(BS, b"b" * BS)
    assert os.path.getsize(os.path.join(pool_dir, "intent.log")) == size  # nothing of it left
    assert bytes(h.pread(BS, BS)) == bytes(BS)  # the refused write changed nothing
    h.pwrite(2 * BS, b"c" * BS)
    p.flush()
    _crash(p)
    q = Pool.open(pool_dir)
    try:
        assert q.replayed_records == 2
        assert bytes(q.open_object("v", "lun").pread(0, 3 * BS)) == b"a" * BS + bytes(BS) + b"c" * BS
        assert q.fsck().clean
    finally:
        q.close()


def test_short_writes_are_continued(pool_dir, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data)[:7])

    p = Pool.create(pool_dir)
    p.create_volume("v")
    p.create_object("v", "lun", 8 * BS)
    h = p.open_object("v", "lun")
    monkeypatch.setattr(fileio.os, "write", short_write)
    h.pwrite(0, b"x" * 2 * BS)
    monkeypatch.setattr(fileio.os, "write", real_write)
    assert len(calls) > 1  # the record took several write(2) calls
    p.flush()
    _crash(p)
    q = Pool.open(pool_dir)
    try:
        assert q.replayed_records == 1
        assert bytes(q.open_object("v", "lun").pread(0, 2 * BS)) == b"x" * 2 * BS
    finally:
        q.close()


def test_a_batch_of_writes_is_one_data_write_and_one_append_all_or_nothing(pool_dir):
    files = FailingFiles()
    p = Pool.create(pool_dir, files=files)
    p.create_volume("v")
    p.create_object("v", "lun", 256 * BS)
    h = p.open_object("v", "lun")
    blocks = [7, 200, 3, 91, 7, 150]  # scattered, block 7 twice (the later one wins)
    items = [(b * BS, bytes([i + 1]) * BS) for i, b in enumerate(blocks)]
    before = dict(files.calls)
    h.pwrite_many(items)
    assert files.calls["data"] - before["data"] == 1 and files.calls["log"] - before["log"] == 1
    # a batch whose log append fails leaves nothing of it, not even its first writes
    files.fail_next = True
    with pytest.raises(NoSpace):
        h.pwrite_many([(10 * BS, b"x" * BS), (11 * BS, b"y" * BS)])
    assert bytes(h.pread(10 * BS, 2 * BS)) == bytes(2 * BS)
    p.flush()
    _crash(p)
    q = Pool.open(pool_dir)
    try:
        assert q.replayed_records == len(items)  # one record per write, all in the batch's one append
        r = q.open_object("v", "lun")
        want = {b: bytes([i + 1]) * BS for i, b in enumerate(blocks)}  # later writes overwrite
        for b, data in want.items():
            assert bytes(r.pread(b * BS, BS)) == data, b
        assert q.fsck().clean
    finally:
        q.close()
