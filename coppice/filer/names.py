"""Name rules, as on ONTAP: what a volume, snapshot, LUN or igroup may be
called, and the parsing of LUN paths.

Contract: pure functions, no store. ``check_*`` return the name or raise
``InvalidName``; ``parse_lun_path`` returns (volume, snapshot or None, lun) or
raises ``BadPath``. Volume names: letters, digits, '_'; start with a letter
or '_'; at most 255 characters. Snapshot and LUN names also allow '.' and
'-' (``hourly.0``, ``lun-0.img``); igroup names also ':' (iqn-like names).
"""

from __future__ import annotations

import re

from .errors import BadPath, InvalidName

MAX_NAME = 255
_RULES = {
    "volume": (re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z"), ""),
    "snapshot": (re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z"), ", '.', '-'"),
    "LUN": (re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z"), ", '.', '-'"),
    "igroup": (re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*\Z"), ", '.', '-', ':'"),
    "file": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z"), ", '.', '-'"),
}


def check(what: str, name) -> str:
    rx, extra = _RULES[what]
    if not isinstance(name, str) or not name:
        raise InvalidName(what=what, name=name, why="it is empty", extra=extra)
    if len(name) > MAX_NAME:
        raise InvalidName(
            what=what, name=name[:40] + "...", why=f"it is {len(name)} characters long", extra=extra
        )
    if not rx.match(name):
        if not re.match(r"[A-Za-z_]", name[0]) and what != "file":
            why = f"it starts with {name[0]!r}"
        else:
            bad = next((c for c in name if not rx.match("a" + c)), name[0])
            why = f"{bad!r} is not allowed"
        raise InvalidName(what=what, name=name, why=why, extra=extra)
    return name


def check_volume(name) -> str:
    return check("volume", name)


def check_snapshot(name) -> str:
    return check("snapshot", name)


def check_lun(name) -> str:
    return check("LUN", name)


def check_igroup(name) -> str:
    return check("igroup", name)


def lun_path(volume: str, lun: str, snapshot: str | None = None) -> str:
    if snapshot is not None:
        return f"/vol/{volume}/.snapshot/{snapshot}/{lun}"
    return f"/vol/{volume}/{lun}"


def parse_lun_path(path, allow_snapshot: bool = False) -> tuple[str, str | None, str]:
    """'/vol/V/L' -> (V, None, L); '/vol/V/.snapshot/S/L' -> (V, S, L)."""
    if not isinstance(path, str) or not path.startswith("/vol/"):
        raise BadPath(path=path, why="it does not start with /vol/")
    parts = path[len("/vol/") :].split("/")
    if len(parts) == 2:
        v, lun = parts
        snap = None
    elif len(parts) == 4 and parts[1] == ".snapshot":
        v, _, snap, lun = parts
        if not allow_snapshot:
            raise BadPath(path=path, why="snapshot LUNs are read-only and cannot be changed")
        check_snapshot(snap)
    else:
        raise BadPath(path=path, why="it has the wrong number of parts")
    check_volume(v)
    check_lun(lun)
    return v, snap, lun
