"""7-mode snapshot schedules: `snap sched VOL weeks days hours[@list]`.

Contract:

* ``parse(text)`` -> ``Schedule`` or ``BadSchedule``. ``"0"`` (or
  ``"0 0 0"``) disables. ``weeks``/``days``/``hours`` are how many weekly,
  nightly and hourly snapshots to keep; ``@list`` names the hours (0-23) at
  which hourly snapshots are taken (default: every hour).
* ``tick(f, now)`` is what the daemon calls (once a minute is plenty); tests
  call it with an explicit clock. For each volume with a schedule (and
  ``nosnap`` off) it takes the snapshots due at the hour slots in
  (last slot taken, now]: Sunday 00:00 is ``weekly``, other midnights
  ``nightly`` (a Sunday midnight too when weeks is 0), listed hours
  ``hourly`` — one snapshot per slot, the larger kind winning. After a long
  stop only the newest due slot of each kind is taken. The first tick after
  a schedule is set (or after the clock went back) takes the current slot.
* Naming and rotation as on 7-mode: the new snapshot is ``KIND.0``, older
  ones are renamed ``KIND.1``, ``KIND.2``, … and those beyond the keep count
  are deleted, oldest first. A snapshot a clone depends on is neither
  deleted nor renamed: it keeps its name and number, the others number
  around it. Each volume's tick is one transaction.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from .errors import BadSchedule
from .lookup import opts, put_opts, require
from .snapshot import create

KINDS = ("weekly", "nightly", "hourly")
MAX_CATCHUP_HOURS = 8 * 24


@dataclass(frozen=True)
class Schedule:
    weeks: int = 0
    days: int = 0
    hours: int = 0
    hour_list: tuple[int, ...] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.weeks or self.days or self.hours)

    def keep(self, kind: str) -> int:
        return {"weekly": self.weeks, "nightly": self.days, "hourly": self.hours}[kind]

    def kind_at(self, t: _dt.datetime) -> str | None:
        """The kind of snapshot due at hour slot ``t``, if any."""
        if t.hour == 0 and t.weekday() == 6 and self.weeks:
            return "weekly"
        if t.hour == 0 and self.days:
            return "nightly"
        if self.hours and (self.hour_list is None or t.hour in self.hour_list):
            return "hourly"
        return None

    def as_dict(self) -> dict:
        return {
            "weeks": self.weeks,
            "days": self.days,
            "hours": self.hours,
            "hour_list": list(self.hour_list) if self.hour_list is not None else None,
            "text": format_schedule(self),
        }


def parse(text) -> Schedule:
    if isinstance(text, (list, tuple)):
        text = " ".join(map(str, text))
    if not isinstance(text, str) or not text.strip():
        raise BadSchedule(text=text, why="it is empty")
    parts = text.split()
    if len(parts) > 3:
        raise BadSchedule(text=text, why="it has more than three fields")
    nums = []
    hour_list = None
    for i, p in enumerate(parts):
        if "@" in p:
            if i != len(parts) - 1 or len(parts) != 3:
                raise BadSchedule(text=text, why="only the hours field takes an @list")
            p, lst = p.split("@", 1)
            hours = []
            for h in lst.split(","):
                if not re.fullmatch(r"\d{1,2}", h) or not 0 <= int(h) <= 23:
                    raise BadSchedule(text=text, why=f"hour {h!r} is not 0-23")
                if int(h) in hours:
                    raise BadSchedule(text=text, why=f"hour {h} is listed twice")
                hours.append(int(h))
            hour_list = tuple(sorted(hours))
        if not re.fullmatch(r"\d{1,3}", p):
            raise BadSchedule(text=text, why=f"{p!r} is not a count")
        n = int(p)
        if n > 255:
            raise BadSchedule(text=text, why=f"{n} is more than 255 snapshots")
        nums.append(n)
    nums += [0] * (3 - len(nums))
    return Schedule(nums[0], nums[1], nums[2], hour_list)


def format_schedule(s: Schedule) -> str:
    h = str(s.hours)
    if s.hour_list is not None:
        h += "@" + ",".join(map(str, s.hour_list))
    return f"{s.weeks} {s.days} {h}"


def _slot(t: _dt.datetime) -> _dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0, tzinfo=None)


def set_schedule(f, vol, spec=None, now: _dt.datetime | None = None) -> dict:

    require(f, vol)
    if spec is not None:
        s = parse(spec)
        with f.transaction():
            put_opts(f, vol, snap_sched=format_schedule(s), sched_last=None)
    s = parse(opts(f, vol)["snap_sched"])
    return {"volume": vol, **s.as_dict()}


def tick(f, now: _dt.datetime, volume: str | None = None) -> list[dict]:

    if volume is not None:
        require(f, volume)
    now = _slot(now)
    vols = [volume] if volume is not None else [v.name for v in f.pool.list_volumes()]
    actions = []
    for vol in vols:
        o = opts(f, vol)
        s = parse(o["snap_sched"])
        if not s.enabled or o["nosnap"]:
            continue
        last = o.get("sched_last")
        last = _dt.datetime.fromisoformat(last) if last else None
        if last is None or last > now:
            slots = [now]
        else:
            n = min(int((now - last).total_seconds() // 3600), MAX_CATCHUP_HOURS)
            slots = [now - _dt.timedelta(hours=k) for k in range(n - 1, -1, -1)]
        due = {}
        for t in slots:
            k = s.kind_at(t)
            if k:
                due[k] = t
        with f.transaction():
            for kind in KINDS:
                if kind in due:
                    actions.append(
                        dict(
                            _rotate_and_take(f, vol, kind, s.keep(kind)),
                            volume=vol,
                            slot=due[kind].isoformat(),
                        )
                    )

            put_opts(f, vol, sched_last=now.isoformat())
    return actions


def _rotate_and_take(f, vol, kind, keep) -> dict:

    pool = f.pool
    rx = re.compile(re.escape(kind) + r"\.(\d+)\Z")
    ours = [s for s in reversed(pool.list_snapshots(vol)) if rx.match(s.name)]  # newest first
    busy = {s.name for s in ours if f.backend.snapshot_clones(vol, s.name)}
    held = {int(rx.match(n).group(1)) for n in busy}
    free = [s.name for s in ours if s.name not in busy]
    retained, deleted = free[: max(0, keep - 1)], free[max(0, keep - 1) :]
    for n in deleted:
        f.backend.delete_snapshot(vol, n)
    numbers = (i for i in range(10**6) if i not in held)
    new_name = f"{kind}.{next(numbers)}"
    targets = {old: f"{kind}.{next(numbers)}" for old in retained}
    moving = {o: n for o, n in targets.items() if o != n}
    for i, old in enumerate(moving):
        f.backend.rename_snapshot(vol, old, f"{kind}.rotating.{i}")
    for i, new in enumerate(moving.values()):
        f.backend.rename_snapshot(vol, f"{kind}.rotating.{i}", new)
    create(f, vol, new_name, by="schedule")
    return {"created": new_name, "deleted": deleted, "renamed": [[o, n] for o, n in moving.items()]}
