"""The write budget counts snapshot spill as it happens: overwriting or
trimming blocks the volume's own snapshots hold moves them out of the
active file system, and what passes the snapshot reserve counts against the
volume's size — refused with VolumeFull, data intact, before any byte is
written. A clone's writes are not charged for blocks its origin holds."""

import os

import pytest

from coppice.filer.errors import VolumeFull

MiB = 1 << 20
BS = 4096


def _fill(f, path, n):
    dev = f.open_lun(path)
    data = os.urandom(n)
    dev.pwrite(0, data)
    return dev, data


def test_overwrite_past_reserve_is_refused(filer):
    f = filer
    f.vol_create("v", "3m", snap_reserve=0)  # 768 blocks, no reserve
    f.lun_create("/vol/v/lun0", "2m")
    dev, data = _fill(f, "/vol/v/lun0", 2 * MiB)  # 512 blocks used
    f.snap_create("v", "s")
    dev = f.open_lun("/vol/v/lun0")
    dev.pwrite(0, os.urandom(MiB))  # 256 now held by s alone: used 768
    dev.pwrite(0, os.urandom(MiB))  # rewriting new blocks spills nothing more
    before = bytes(dev.pread(MiB, BS))
    with pytest.raises(VolumeFull):
        dev.pwrite(MiB, os.urandom(BS))  # one more spilled block: 769 > 768
    assert bytes(dev.pread(MiB, BS)) == before == data[MiB : MiB + BS]
    # The snapshot still reads its data.
    snap = f.open_lun("/vol/v/.snapshot/s/lun0")
    assert bytes(snap.pread(0, 2 * MiB)) == data
    # Deleting the snapshot gives the space back (a management op recounts).
    f.snap_delete("v", "s")
    f.open_lun("/vol/v/lun0").pwrite(MiB, os.urandom(MiB))


def test_reserve_absorbs_spill(filer):
    f = filer
    f.vol_create("v", "6m", snap_reserve=50)  # 768 blocks active, 768 reserve
    f.lun_create("/vol/v/lun0", "2m")
    _fill(f, "/vol/v/lun0", 2 * MiB)
    f.snap_create("v", "s")
    dev = f.open_lun("/vol/v/lun0")
    dev.pwrite(0, os.urandom(2 * MiB))  # 512 spilled, all inside the reserve
    dev.pwrite(0, os.urandom(2 * MiB))


def test_trim_of_snapshot_blocks_spills_without_refusing(filer):
    f = filer
    f.vol_create("v", "3m", snap_reserve=0)
    f.lun_create("/vol/v/lun0", "2m")
    _fill(f, "/vol/v/lun0", 2 * MiB)
    f.snap_create("v", "s")
    dev = f.open_lun("/vol/v/lun0")
    dev.trim(0, 2 * MiB)  # never refused; active 0, spill 512
    dev.pwrite(0, os.urandom(MiB))  # 256 new blocks: 768, fits
    with pytest.raises(VolumeFull):
        dev.pwrite(MiB, os.urandom(BS))


def test_clone_writes_not_charged_for_origin_blocks(filer):
    f = filer
    f.vol_create("v", "3m", snap_reserve=0)
    f.lun_create("/vol/v/lun0", "2m")
    _fill(f, "/vol/v/lun0", 2 * MiB)
    f.snap_create("v", "base")
    f.clone_create("c", "v", "base")
    dev = f.open_lun("/vol/c/lun0", allow_offline=True)
    for _ in range(3):  # the origin's snapshot keeps those, not the clone
        dev.pwrite(0, os.urandom(2 * MiB))
