"""The space-history ring: bounded, oldest first, survives reopening, ignores a foreign file."""

from __future__ import annotations

import os

from coppice.api.space_history import HEADER, RECORD, SpaceHistory


def test_ring_is_bounded_and_keeps_the_newest(tmp_path):
    h = SpaceHistory(str(tmp_path), slots=5)
    for i in range(12):
        h.record({"t": 1000.0 + i, "used": i * 4096, "free": 10, "total": 20, "metadata": 1})
    size = os.path.getsize(h.path)
    assert size == HEADER.size + 5 * RECORD.size
    got = h.samples()
    assert [s["t"] for s in got] == [1007.0, 1008.0, 1009.0, 1010.0, 1011.0]
    assert got[-1]["used"] == 11 * 4096
    # a new process (a restarted daemon) continues after the newest sample, not over it
    h2 = SpaceHistory(str(tmp_path), slots=5)
    h2.record({"t": 2000.0, "used": 1, "free": 1, "total": 2, "metadata": 0})
    assert [s["t"] for s in h2.samples()] == [1008.0, 1009.0, 1010.0, 1011.0, 2000.0]
    assert os.path.getsize(h.path) == size
    assert [s["t"] for s in h2.samples(since=1010.0)] == [1010.0, 1011.0, 2000.0]


def test_foreign_or_resized_file_starts_a_new_ring(tmp_path):
    path = tmp_path / "space-history.bin"
    path.write_bytes(b"something else entirely")
    h = SpaceHistory(str(tmp_path), slots=3)
    assert h.samples() == []
    h.record({"t": 5.0, "used": 1, "free": 2, "total": 3, "metadata": 0})
    assert [s["t"] for s in SpaceHistory(str(tmp_path), slots=3).samples()] == [5.0]
    assert SpaceHistory(str(tmp_path), slots=4).samples() == []  # another layout: not misread
