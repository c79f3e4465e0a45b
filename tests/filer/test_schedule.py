import datetime as dt

import pytest

from coppice.filer.errors import BadSchedule
from coppice.filer.schedule import Schedule, format_schedule, parse

pytestmark = pytest.mark.backends("native", "rbd")


def T(day, hour):
    return dt.datetime(2024, 3, day, hour, 0)  # 2024-03-03 is a Sunday


def test_parse():
    assert parse("0 2 6@8,12,16,20") == Schedule(0, 2, 6, (8, 12, 16, 20))
    assert parse("0") == Schedule() and not parse("0").enabled
    assert parse("1 2 3") == Schedule(1, 2, 3)
    assert format_schedule(parse("0 2 6@20,8")) == "0 2 6@8,20"
    for bad in ("", "a", "1 2 3 4", "0 2@3 6", "0 2 6@24", "0 2 6@8,8", "0 0 999"):
        with pytest.raises(BadSchedule):
            parse(bad)


def test_hourly_naming_and_rotation(filer):
    filer.vol_create("v", "1g")
    filer.snap_sched("v", "0 0 2@8,12,16")
    assert filer.snap_sched_tick(T(4, 8))[0]["created"] == "hourly.0"
    assert filer.snap_sched_tick(T(4, 9)) == []  # 9 is not listed
    a = filer.snap_sched_tick(T(4, 12))[0]
    assert a["renamed"] == [["hourly.0", "hourly.1"]]
    a = filer.snap_sched_tick(T(4, 16))[0]
    assert a["deleted"] == ["hourly.1"]  # keep 2
    assert [s["name"] for s in filer.snap_list("v")] == ["hourly.0", "hourly.1"]
    assert filer.snap_sched_tick(T(4, 16)) == []  # the same slot twice takes one snapshot


def test_nightly_weekly_precedence_and_catchup(filer):
    filer.vol_create("v", "1g")
    filer.snap_sched("v", "1 2 3")
    assert filer.snap_sched_tick(T(3, 0))[0]["created"] == "weekly.0"  # Sunday midnight
    # a day later: the midnight slot is nightly, and 23:00 was an hourly slot
    assert [a["created"] for a in filer.snap_sched_tick(T(4, 0))] == ["nightly.0", "hourly.0"]
    # the daemon was down a day and a half: one of each kind due, the newest
    acts = filer.snap_sched_tick(T(5, 13))
    assert [(a["created"], a["slot"]) for a in acts] == [
        ("nightly.0", "2024-03-05T00:00:00"),
        ("hourly.0", "2024-03-05T13:00:00"),
    ]
    names = {s["name"] for s in filer.snap_list("v")}
    assert names == {"weekly.0", "nightly.0", "nightly.1", "hourly.0", "hourly.1"}


def test_busy_scheduled_snapshot_keeps_its_name(filer):
    filer.vol_create("v", "1g")
    filer.snap_sched("v", "0 0 2")
    filer.snap_sched_tick(T(4, 1))
    filer.clone_create("c", "v", "hourly.0")
    filer.snap_sched_tick(T(4, 2))
    filer.snap_sched_tick(T(4, 3))
    names = sorted(s["name"] for s in filer.snap_list("v"))
    assert "hourly.0" in names and filer.snap_list("v")[-1]["clones"] == ["c"]
    assert names == ["hourly.0", "hourly.1", "hourly.2"]


def test_nosnap_and_disabled_take_nothing(filer):
    filer.vol_create("v", "1g")
    assert filer.snap_sched_tick(T(4, 8)) == []
    filer.snap_sched("v", "0 0 1")
    filer.vol_set_option("v", "nosnap", "on")
    assert filer.snap_sched_tick(T(4, 8)) == []
