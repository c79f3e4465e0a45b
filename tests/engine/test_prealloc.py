"""The data file is preallocated ahead of the allocator (writes into space
the file system already holds are several times faster), without changing
what is stored, what fsck sees, or what a reopened pool reads."""

import os

from coppice.engine import Pool
from coppice.engine.pool import PREALLOC_MAX_BYTES


def test_data_file_is_held_ahead_of_the_allocator_and_content_is_unchanged(pool_dir):
    p = Pool.create(pool_dir)
    p.create_volume("v")
    p.create_object("v", "lun0", 256 << 20)
    h = p.open_object("v", "lun0")
    chunks = [os.urandom(1 << 20) for _ in range(8)]
    for i, c in enumerate(chunks):
        h.pwrite(i << 20, c)
    p.flush()
    bs = p.block_size
    data = os.path.join(pool_dir, "data", "blocks")
    st = os.stat(data)
    top = p.alloc.next_pbn * bs
    assert st.st_size > top, "nothing preallocated past the allocator's high-water mark"
    assert st.st_blocks * 512 >= st.st_size - bs, "the file is sparse: not preallocated"
    assert st.st_size - top <= max(top, 1 << 20) + PREALLOC_MAX_BYTES
    p.checkpoint()
    rep = p.fsck()
    assert rep.clean, rep.problems
    p.close()
    q = Pool.open(pool_dir)
    h = q.open_object("v", "lun0")
    for i, c in enumerate(chunks):
        assert bytes(h.pread(i << 20, 1 << 20)) == c
    assert bytes(h.pread(8 << 20, 4096)) == bytes(4096)
    q.close()
