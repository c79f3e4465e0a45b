"""Bad input gets a clear error naming what is wrong, and changes nothing:
the pool's dump is identical before and after every refused call."""

import pytest

from coppice.engine import Pool
from coppice.errors import CoppiceError

BS = 4096


@pytest.fixture
def populated(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun0", 16 * BS)
    pool.open_object("v", "lun0").pwrite(0, b"x" * BS)
    pool.create_snapshot("v", "s")
    pool.clone_volume("c", "v", "s")
    return pool


CASES = [
    ("negative size", lambda p: p.create_object("v", "n", -1), "size"),
    ("non-int size", lambda p: p.create_object("v", "n", 1.5), "size"),
    ("slash in name", lambda p: p.create_volume("a/b"), "'/'"),
    ("NUL in name", lambda p: p.create_volume("a\0b"), "NUL"),
    ("long name", lambda p: p.create_volume("x" * 256), "255"),
    ("empty name", lambda p: p.create_snapshot("v", ""), "non-empty"),
    ("duplicate volume", lambda p: p.create_volume("v"), "already exists"),
    ("duplicate snapshot", lambda p: p.create_snapshot("v", "s"), "already exists"),
    ("duplicate object", lambda p: p.create_object("v", "lun0", BS), "already exists"),
    ("missing volume", lambda p: p.delete_volume("nope"), "nope not found"),
    ("missing snapshot", lambda p: p.delete_snapshot("v", "nope"), "nope not found"),
    ("missing object", lambda p: p.delete_object("v", "nope"), "nope not found"),
    ("clone from missing snapshot", lambda p: p.clone_volume("c2", "v", "nope"), "nope not found"),
    ("clone onto existing name", lambda p: p.clone_volume("c", "v", "s"), "already exists"),
    ("delete busy snapshot", lambda p: p.delete_snapshot("v", "s"), "clone c depends on it"),
    ("delete volume with busy snapshot", lambda p: p.delete_volume("v"), "clone c depends on it"),
    ("write past end", lambda p: p.open_object("v", "lun0").pwrite(16 * BS, b"x"), "outside"),
    ("read past end", lambda p: p.open_object("v", "lun0").pread(15 * BS, 2 * BS), "outside"),
    ("write to snapshot", lambda p: p.open_object("v", "lun0", "s").pwrite(0, b"y"), "read-only"),
    ("split a non-clone", lambda p: list(p.split_clone_steps("v")), "not a clone"),
    (
        "rename snapshot onto another",
        lambda p: (p.create_snapshot("v", "t"), p.rename_snapshot("v", "t", "s")),
        "already exists",
    ),
]


@pytest.mark.parametrize("label,call,needle", CASES, ids=[c[0] for c in CASES])
def test_refused_and_unchanged(populated, label, call, needle):
    p = populated
    if label == "rename snapshot onto another":
        p.create_snapshot("v", "t")
        call = lambda p: p.rename_snapshot("v", "t", "s")  # noqa: E731
    before = p.dump()
    with pytest.raises(CoppiceError) as ei:
        call(p)
    assert needle in str(ei.value), str(ei.value)
    assert p.dump() == before
    assert p.fsck().clean


def test_bad_block_size_refused(pool_dir):
    for bs in (0, 1000, 3 << 20, -4096):
        with pytest.raises(CoppiceError, match="block size"):
            Pool.create(pool_dir, block_size=bs)


def test_second_open_names_the_holder(pool, pool_dir):
    with pytest.raises(CoppiceError) as ei:
        Pool.open(pool_dir)
    assert "in use by process" in str(ei.value)


def test_open_missing_pool(tmp_path):
    with pytest.raises(CoppiceError, match="No pool at"):
        Pool.open(str(tmp_path / "nothing"))


def test_failed_transaction_rolls_back_everything(populated):
    p = populated
    before = p.dump()
    with pytest.raises(CoppiceError):
        with p.transaction():
            p.create_volume("w")
            p.create_snapshot("v", "s2")
            p.create_volume("w")  # fails: duplicate
    assert p.dump() == before
    assert p.fsck().clean
