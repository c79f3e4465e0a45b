"""Per-volume deduplication settings ("sis config") and schedules.

Contract: the settings of volume V live in the pool's kv store, scope
``sis``, key ``vol:<dataset id of V>`` (a rename keeps them; deleting the
volume orphans the record, which ``prune`` drops). A record is a JSON dict:

    enabled      bool   post-process scans allowed (``sis on|off``)
    inline       bool   the write path deduplicates (``sis config -i``)
    schedule     str    ONTAP-style schedule, "-" for none
    schedule_set float  when the schedule was set (a slot before it is not due)
    last_run     dict   summary of the last finished scan (see scanner)

Every setter is atomic and durable on return (one pool transaction).
``due(pool, now)`` is what the daemon calls once a minute or so: the
volumes whose schedule has a slot in (last run, now].

Schedule grammar (ONTAP's ``sis config -s``): ``day_list[@hour_list]`` or
``@hour_list`` (every day) or ``-`` (none). day_list: ``sun-sat``,
``mon,wed,fri``, ``sat``; hour_list: ``0``, ``0,12``, ``8-17``.
"""

from __future__ import annotations

import datetime as _dt
import time

from ..errors import InvalidArgument

SCOPE = "sis"
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
DEFAULTS = {"enabled": False, "inline": False, "schedule": "-", "schedule_set": 0.0, "last_run": None}


class BadSisSchedule(InvalidArgument):
    """Invalid deduplication schedule {text!r}: {why}. Use day_list[@hour_list]
    such as sun-sat@0, mon,wed,fri@2,14, @0-23, or - for none."""


class SisNotEnabled(InvalidArgument):
    """Deduplication is not enabled on volume {volume}: run `coppice sis on
    /vol/{volume}` first."""


def vol_key(pool, volume: str) -> str:
    return f"vol:{pool.volume(volume).id}"


def get(pool, volume: str) -> dict:
    """The settings of ``volume`` (defaults when never configured)."""
    rec = dict(DEFAULTS)
    rec.update(pool.kv_get(SCOPE, vol_key(pool, volume), {}) or {})
    return rec


def update(pool, volume: str, **changes) -> dict:
    rec = get(pool, volume)
    rec.update(changes)
    pool.kv_put(SCOPE, vol_key(pool, volume), rec)
    inline = getattr(pool, "inline_dedup", None)
    if inline is not None and hasattr(inline, "refresh"):
        inline.refresh()
    return rec


def _require_dedup(pool, what: str) -> None:
    from ..backend import require_dedup

    require_dedup(pool, what)


def set_enabled(pool, volume: str, on: bool) -> dict:
    if on:
        _require_dedup(pool, f"sis on volume {volume}")
    changes = {"enabled": bool(on)}
    if not on:
        changes["inline"] = False  # ONTAP: sis off stops inline too
    return update(pool, volume, **changes)


def set_inline(pool, volume: str, on: bool) -> dict:
    if on:
        _require_dedup(pool, f"inline sis on volume {volume}")
    if on and not get(pool, volume)["enabled"]:
        raise SisNotEnabled(volume=volume)
    return update(pool, volume, inline=bool(on))


def set_schedule(pool, volume: str, text: str) -> dict:
    _require_dedup(pool, f"a sis schedule on volume {volume}")
    parse_schedule(text)
    return update(pool, volume, schedule=text.strip(), schedule_set=time.time())


def all_volumes(pool) -> dict[str, dict]:
    """name -> settings for every volume of the pool."""
    by_id = {v.id: v.name for v in pool.list_volumes()}
    out = {name: dict(DEFAULTS) for name in by_id.values()}
    for key, rec in pool.kv_items(SCOPE):
        if key.startswith("vol:"):
            vid = int(key[4:])
            if vid in by_id:
                out[by_id[vid]].update(rec)
    return out


def prune(pool) -> int:
    """Drop the records of volumes that no longer exist."""
    ids = {v.id for v in pool.list_volumes()}
    n = 0
    for key, _ in pool.kv_items(SCOPE):
        if key.startswith("vol:") and int(key[4:]) not in ids:
            pool.kv_delete(SCOPE, key)
            n += 1
    return n


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------
def _parse_list(text: str, names: list[str] | None, lo: int, hi: int, what: str, full: str) -> set[int]:
    def one(tok: str) -> int:
        tok = tok.strip().lower()
        if names is not None and tok in names:
            return names.index(tok)
        if tok.isdigit() and lo <= int(tok) <= hi:
            return int(tok)
        raise BadSisSchedule(text=full, why=f"{tok!r} is not a {what}")

    out: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            a, b = one(a), one(b)
            if a <= b:
                out.update(range(a, b + 1))
            else:  # wraps: fri-mon
                out.update(range(a, hi + 1))
                out.update(range(lo, b + 1))
        else:
            out.add(one(part))
    return out


def parse_schedule(text: str) -> tuple[frozenset, frozenset] | None:
    """(days 0=sun..6, hours 0..23) or None for "-". Raises BadSisSchedule."""
    if not isinstance(text, str) or not text.strip():
        raise BadSisSchedule(text=text, why="it is empty")
    t = text.strip().lower()
    if t == "-":
        return None
    day_part, at, hour_part = t.partition("@")
    if at and not hour_part:
        raise BadSisSchedule(text=text, why="no hour after '@'")
    days = _parse_list(day_part, DAYS, 0, 6, "day (sun..sat)", text) if day_part else set(range(7))
    hours = _parse_list(hour_part, None, 0, 23, "hour (0..23)", text) if hour_part else {0}
    return frozenset(days), frozenset(hours)


def last_slot(text: str, now: _dt.datetime) -> _dt.datetime | None:
    """The latest scheduled start at or before ``now`` (within 8 days)."""
    sched = parse_schedule(text)
    if sched is None:
        return None
    days, hours = sched
    t = now.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 8):
        # isoweekday: mon=1..sun=7 -> sun=0..sat=6
        if t.isoweekday() % 7 in days and t.hour in hours:
            return t
        t -= _dt.timedelta(hours=1)
    return None


def _as_datetime(now) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now()
    if isinstance(now, _dt.datetime):
        return now
    return _dt.datetime.fromtimestamp(float(now))


def due(pool, now=None) -> list[str]:
    """Volumes whose schedule has a slot in (max(last run start, time the
    schedule was set), now]: the daemon starts a scan of each. ``now`` is a
    naive local datetime or a POSIX time (default: now)."""
    now_dt = _as_datetime(now)
    out = []
    for name, rec in sorted(all_volumes(pool).items()):
        if not rec.get("enabled") or rec.get("schedule", "-") == "-":
            continue
        slot = last_slot(rec["schedule"], now_dt)
        if slot is None:
            continue
        last = max((rec.get("last_run") or {}).get("started", 0.0), rec.get("schedule_set", 0.0))
        if slot.timestamp() > last:
            out.append(name)
    return out
