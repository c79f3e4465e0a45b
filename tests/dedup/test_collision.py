"""A fingerprint match is only a hint: with a fingerprint function that makes
every block collide, different blocks stay different and equal ones are
still merged."""

from coppice import dedup
from coppice.dedup.index import group_by_content

from .helpers import BS, assert_clean, digest_all, rand_bytes, used_blocks


def test_group_by_content_separates_colliding_blocks():
    # The pure confirmation step splits a fingerprint group by actual bytes.
    blocks = {1: b"a" * BS, 2: b"b" * BS, 3: b"a" * BS, 4: b"c" * BS, 5: b"b" * BS}
    classes = group_by_content([1, 2, 3, 4, 5], blocks.__getitem__)
    assert sorted(sorted(c) for c in classes) == [[1, 3], [2, 5], [4]]


def test_group_by_content_checks_bytes_not_only_digest(monkeypatch):
    # Even a colliding strong digest does not merge different blocks.
    import coppice.dedup.index as index

    class FakeBlake:
        def __init__(self, data):
            pass

        def digest(self):
            return b"same"

    monkeypatch.setattr(index.blake3, "blake3", FakeBlake)
    monkeypatch.setattr(index, "SMALL_GROUP", 0)  # force the digest path
    blocks = {1: b"x" * BS, 2: b"y" * BS, 3: b"x" * BS}
    classes = group_by_content([1, 2, 3], blocks.__getitem__)
    assert sorted(sorted(c) for c in classes) == [[1, 3], [2]]


def test_colliding_fingerprints_never_merge_different_blocks(pool):
    # Every block gets fingerprint 42: distinct blocks survive, duplicates merge.
    distinct = rand_bytes(256 * BS, 11)
    pool.create_volume("a")
    pool.create_volume("b")
    for v in ("a", "b"):
        pool.create_object(v, "lun", 512 * BS)
        dedup.config.set_enabled(pool, v, True)
    pool.open_object("a", "lun").pwrite(0, distinct)
    pool.open_object("b", "lun").pwrite(0, distinct[: 128 * BS] + rand_bytes(128 * BS, 12))
    before = digest_all(pool)
    job = dedup.scan(pool, fingerprint=lambda data: 42)
    c = job["counters"]
    assert c["collisions"] == 1  # one fingerprint, many contents
    assert c["shared"] == 128  # only the truly equal half of b
    assert digest_all(pool) == before
    assert used_blocks(pool) == 256 + 128
    assert_clean(pool)
