"""Randomized model test (ztest's idea): random sequences of write, trim,
snapshot, clone, delete, split, restore and reopen against a dict-of-bytes
reference model. Content always equals the model and fsck is clean after
every step."""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coppice.engine import Pool

BS = 4096
SIZE = 64 * BS * 10  # spans several leaves' worth with a small cache


class EngineModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="coppice-model-", dir="/var/tmp")
        self.path = os.path.join(self.dir, "pool")
        # A tiny cache forces eviction and reload of pages all the time.
        self.pool = Pool.create(self.path, cache_bytes=16 * 8192)
        self.pool.create_volume("v0")
        self.pool.create_object("v0", "lun", SIZE)
        # model: (volume, snapshot or None) -> bytearray
        self.model = {("v0", None): bytearray(SIZE)}
        self.n = 0

    def teardown(self):
        self.pool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def volumes(self):
        return sorted(v for v, s in self.model if s is None)

    def datasets(self):
        return sorted(self.model, key=lambda k: (k[0], k[1] or ""))

    @rule(
        data=st.data(),
        off=st.integers(0, SIZE - 1),
        ln=st.integers(1, 3 * 2048 * 4),
        seed=st.integers(0, 255),
        fua=st.booleans(),
    )
    def write(self, data, off, ln, seed, fua):
        vol = data.draw(st.sampled_from(self.volumes()))
        ln = min(ln, SIZE - off)
        payload = bytes((seed + i * 7) % 251 for i in range(ln)) if seed % 5 else bytes(ln)
        self.pool.open_object(vol, "lun").pwrite(off, payload, fua=fua)
        self.model[(vol, None)][off : off + ln] = payload

    @rule(
        data=st.data(),
        writes=st.lists(
            st.tuples(st.integers(0, SIZE // BS - 1), st.integers(1, 4), st.integers(0, 255), st.booleans()),
            min_size=1,
            max_size=12,
        ),
    )
    def write_many(self, data, writes):
        """A batch (what NBD hands over when many WRITEs arrive at once):
        mostly whole blocks, which go through the batched path; overlaps, a
        zero block or an unaligned write send it through the one-at-a-time
        path. Either way it equals the writes done one after the other."""
        vol = data.draw(st.sampled_from(self.volumes()))
        items = []
        for blk, nblk, seed, unaligned in writes:
            off = blk * BS + (seed % 100 if unaligned and seed % 7 == 0 else 0)
            ln = min(nblk * BS, SIZE - off)
            payload = bytes((seed + i * 13) % 251 for i in range(ln)) if seed % 11 else bytes(ln)
            items.append((off, payload))
        self.pool.open_object(vol, "lun").pwrite_many(items)
        for off, payload in items:
            self.model[(vol, None)][off : off + len(payload)] = payload

    @rule(data=st.data(), off=st.integers(0, SIZE - 1), ln=st.integers(1, SIZE))
    def trim(self, data, off, ln):
        vol = data.draw(st.sampled_from(self.volumes()))
        ln = min(ln, SIZE - off)
        self.pool.open_object(vol, "lun").trim(off, ln)
        self.model[(vol, None)][off : off + ln] = bytes(ln)

    @rule(data=st.data())
    def snapshot(self, data):
        vol = data.draw(st.sampled_from(self.volumes()))
        self.n += 1
        name = f"s{self.n}"
        self.pool.create_snapshot(vol, name)
        self.model[(vol, name)] = bytearray(self.model[(vol, None)])

    @precondition(lambda self: any(s for _, s in self.model))
    @rule(data=st.data())
    def clone(self, data):
        vol, snap = data.draw(st.sampled_from([k for k in self.datasets() if k[1]]))
        self.n += 1
        name = f"c{self.n}"
        self.pool.clone_volume(name, vol, snap)
        self.model[(name, None)] = bytearray(self.model[(vol, snap)])

    @precondition(lambda self: any(s for _, s in self.model))
    @rule(data=st.data())
    def delete_snapshot(self, data):
        vol, snap = data.draw(st.sampled_from([k for k in self.datasets() if k[1]]))
        if self.pool.clones_of(vol, snap):
            return
        self.pool.delete_snapshot(vol, snap)
        del self.model[(vol, snap)]

    @precondition(lambda self: len([1 for _, s in self.model if s is None]) > 1)
    @rule(data=st.data())
    def delete_volume(self, data):
        vol = data.draw(st.sampled_from(self.volumes()))
        snaps = [s for v, s in self.model if v == vol and s]
        if any(self.pool.clones_of(vol, s) for s in snaps):
            return
        self.pool.delete_volume(vol)
        for k in [k for k in self.model if k[0] == vol]:
            del self.model[k]

    @rule(data=st.data())
    def split(self, data):
        clones = [v for v in self.volumes() if self.pool.origin_of(v)]
        if not clones:
            return
        vol = data.draw(st.sampled_from(clones))
        self.pool.split_clone(vol)
        assert self.pool.origin_of(vol) is None
        assert self.pool.split_estimate(vol) == 0

    @precondition(lambda self: any(s for _, s in self.model))
    @rule(data=st.data())
    def restore(self, data):
        vol, snap = data.draw(st.sampled_from([k for k in self.datasets() if k[1]]))
        self.pool.restore_snapshot(vol, snap)
        self.model[(vol, None)] = bytearray(self.model[(vol, snap)])

    @rule()
    def reopen(self):
        self.pool.close()
        self.pool = Pool.open(self.path, cache_bytes=16 * 8192)

    @invariant()
    def content_matches_and_fsck_clean(self):
        for (vol, snap), want in self.model.items():
            got = self.pool.open_object(vol, "lun", snap).pread(0, SIZE)
            assert bytes(got) == bytes(want), f"{vol}@{snap} differs from the model"
        rep = self.pool.fsck()
        assert rep.clean, rep.problems

    @invariant()
    def clone_index_matches_a_walk(self):
        # snapshots' clones come from an index kept on change (clone, split,
        # delete, a rolled-back transaction); it equals a walk of every dataset
        p = self.pool
        for s in [d for d in p.datasets.values() if d.kind == "snapshot"]:
            walk = sorted(d.name for d in p.datasets.values() if d.kind == "volume" and d.origin_id == s.id)
            assert [d.name for d in p._clones_of(s)] == walk


EngineModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
)
test_engine_model = EngineModel.TestCase
