"""sis settings and schedules: parsing, persistence, and what is due when."""

import datetime as dt

import pytest

from coppice import dedup
from coppice.dedup import config


def test_parse_schedule_forms():
    # ONTAP-style day and hour lists, ranges, wrap-around, and "-".
    assert config.parse_schedule("-") is None
    days, hours = config.parse_schedule("sun-sat@0")
    assert days == set(range(7)) and hours == {0}
    days, hours = config.parse_schedule("mon,wed,fri@2,14")
    assert days == {1, 3, 5} and hours == {2, 14}
    days, hours = config.parse_schedule("fri-mon@22-23")
    assert days == {5, 6, 0, 1} and hours == {22, 23}
    assert config.parse_schedule("@8-10") == (frozenset(range(7)), frozenset({8, 9, 10}))


@pytest.mark.parametrize("bad", ["", "funday@0", "sun@24", "sun@x", "@"])
def test_parse_schedule_rejects(bad):
    # A bad schedule is refused with the grammar in the message.
    with pytest.raises(config.BadSisSchedule):
        config.parse_schedule(bad)


def test_settings_persist_and_follow_rename(pool_dir):
    # Settings survive reopen and a volume rename (keyed by volume id).
    from coppice.engine import Pool

    p = Pool.create(pool_dir)
    p.create_volume("a")
    config.set_enabled(p, "a", True)
    config.set_inline(p, "a", True)
    config.set_schedule(p, "a", "sat@3")
    p.rename_volume("a", "b")
    p.close()
    p = Pool.open(pool_dir)
    rec = config.get(p, "b")
    assert rec["enabled"] and rec["inline"] and rec["schedule"] == "sat@3"
    config.set_enabled(p, "b", False)
    assert config.get(p, "b")["inline"] is False  # sis off stops inline too
    p.close()


def test_inline_requires_sis_on(pool):
    # Inline on a volume without sis on is refused.
    pool.create_volume("v")
    with pytest.raises(config.SisNotEnabled):
        config.set_inline(pool, "v", True)


def test_due(pool):
    # A volume is due once a slot has passed since the schedule was set / last run.
    pool.create_volume("v")
    pool.create_volume("w")
    config.set_enabled(pool, "v", True)
    config.update(pool, "v", schedule="sun-sat@3", schedule_set=dt.datetime(2026, 1, 1, 1, 0).timestamp())
    assert config.due(pool, dt.datetime(2026, 1, 1, 2, 59)) == []
    assert config.due(pool, dt.datetime(2026, 1, 1, 3, 0)) == ["v"]
    config.update(pool, "v", last_run={"started": dt.datetime(2026, 1, 1, 3, 1).timestamp()})
    assert config.due(pool, dt.datetime(2026, 1, 1, 23, 0)) == []
    assert config.due(pool, dt.datetime(2026, 1, 2, 3, 30)) == ["v"]
    config.set_enabled(pool, "v", False)
    assert config.due(pool, dt.datetime(2026, 1, 2, 3, 30)) == []


def test_run_due_scans_due_volumes(pool):
    # The daemon's entry point scans what is due and records the run.
    pool.create_volume("v")
    pool.create_object("v", "lun", 1 << 20)
    config.set_enabled(pool, "v", True)
    config.update(pool, "v", schedule="@0-23", schedule_set=0.0)
    assert dedup.run_due(pool) == ["v"]
    assert config.get(pool, "v")["last_run"] is not None
    assert dedup.run_due(pool) == []
