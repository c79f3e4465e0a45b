"""Which LUNs an NBD initiator may list and open: the filer's
``coppice.nbd.blockdev.ExportResolver``.

Contract: export names are LUN paths, ``/vol/V/lun0``, and for snapshots
``/vol/V/.snapshot/S/lun0`` (read-only).

* A network initiator may open an active LUN when it is online and mapped
  to an igroup that holds the initiator (``igroup.matches``: its TLS/PSK
  name, or its IP address in a listed network).
* A snapshot's LUN is authorized by its own identity, not by its path: the
  snapshot LUN carries the serial number of the LUN it was taken of, and a
  network initiator may open it when it may open the active LUN with that
  serial in the same volume today (whatever that LUN is called now). After
  ``lun move`` or ``lun destroy`` plus a new LUN of the old name, the new
  LUN's hosts do not see the old LUN's snapshots. A snapshot LUN whose LUN
  no longer exists is open to the local socket only.
* The local Unix-socket peer (root on this host) sees every online LUN and
  every snapshot LUN.
* Anything refused is reported ``ExportNotFound``, exactly as a name that
  does not exist, so names cannot be probed; the exception's ``reason``
  says why for the administrator's log (never sent to the client).
* ``authorize(name, initiator, device)`` re-decides for an open connection:
  the name must still name the object the device opened, and the initiator
  must still be allowed. The NBD server calls it after every access change.
* ``on_revoke(callback, recheck)`` registers with the Filer: ``callback``
  after a LUN's content or identity changed under its clients (destroy,
  rename, resize, SnapRestore commit), ``recheck`` after who may open it
  changed (unmap, offline, an initiator removed from an igroup).
* ``who(path)`` lists the igroup members that match a LUN, for ``coppice
  nbd who``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NotFound
from . import igroup as _igroup
from .names import lun_path, parse_lun_path


class ExportNotFound(NotFound):
    """Export {name} not found (or not mapped to this initiator); `coppice lun
    show -m` lists LUNs and their maps, `coppice nbd who PATH` who may open one."""

    def __init__(self, name: str, reason: str = "no such export"):
        super().__init__(name=name)
        self.reason = reason  # for the daemon's log only


@dataclass(frozen=True)
class _Target:
    """What an export name resolves to right now."""

    volume: str
    snapshot: str | None
    lun: str
    oid: int


def describe_initiator(initiator) -> str:
    if initiator.unix:
        return "the local socket"
    name = f"certificate name {initiator.name!r}" if initiator.name else "no certificate name"
    return f"address {initiator.address or '?'}, {name}"


class FilerExportResolver:
    def __init__(self, filer):
        self.filer = filer

    # ------------------------------------------------------------ decisions

    def _igroups_of(self, initiator) -> set[str]:
        return {
            name for name, rec in self.filer.pool.kv_items(_igroup.SCOPE) if _igroup.matches(rec, initiator)
        }

    def _active_refusal(self, path: str, meta: dict, groups: set[str], initiator) -> str | None:
        """Why ``initiator`` may not open the active LUN with ``meta``, or None."""
        if not meta.get("online", True):
            r = meta.get("offline_reason")
            return f"LUN {path} is offline" + (f" ({r})" if r else "")
        if initiator.unix:
            return None
        maps = [m["igroup"] for m in meta.get("maps") or []]
        if any(g in groups for g in maps):
            return None
        if not maps:
            return f"LUN {path} is not mapped to any igroup (`coppice lun map {path} IGROUP`)"
        return (
            f"LUN {path} is mapped to igroup {', '.join(maps)}, which holds no member matching "
            f"this initiator ({describe_initiator(initiator)}); an NBD initiator is matched by "
            "its IP address or network, or by its TLS client certificate's name"
        )

    def _lun_with_serial(self, vol: str, serial):
        if not serial:
            return None
        for o in self.filer.pool.list_objects(vol):
            if o.kind == "lun" and o.meta.get("serial") == serial:
                return o
        return None

    def _decide(self, name: str, initiator, groups: set[str] | None = None) -> _Target:
        """The target ``name`` resolves to, if ``initiator`` may open it; else
        raise ExportNotFound with the reason. Caller holds the filer lock."""
        try:
            vol, snap, lun = parse_lun_path(name, allow_snapshot=True)
        except Exception:
            raise ExportNotFound(name=name, reason="not a LUN path (/vol/VOL/LUN)") from None
        pool = self.filer.pool
        if not pool.has_volume(vol):
            raise ExportNotFound(name=name, reason=f"no volume {vol}")
        if snap is not None and snap not in {s.name for s in pool.list_snapshots(vol)}:
            raise ExportNotFound(name=name, reason=f"no snapshot {snap} of volume {vol}")
        if not pool.has_object(vol, lun, snap):
            raise ExportNotFound(name=name, reason="no such LUN")
        o = pool.object_info(vol, lun, snap)
        if o.kind != "lun":
            raise ExportNotFound(name=name, reason="not a LUN")
        target = _Target(vol, snap, lun, o.id)
        if initiator.unix and snap is not None:
            return target
        if groups is None:
            groups = set() if initiator.unix else self._igroups_of(initiator)
        if snap is None:
            why = self._active_refusal(name, o.meta, groups, initiator)
        else:
            serial = o.meta.get("serial")
            active = self._lun_with_serial(vol, serial)
            if active is None:
                why = (
                    f"the LUN this snapshot LUN was taken of (serial {serial or '?'}) no longer "
                    f"exists in volume {vol}; only the local socket may open it"
                )
            else:
                why = self._active_refusal(lun_path(vol, active.name), active.meta, groups, initiator)
                if why:
                    why = f"snapshot LUN of {lun_path(vol, active.name)} (serial {serial}): {why}"
        if why:
            raise ExportNotFound(name=name, reason=why)
        return target

    # ------------------------------------------------------------ the resolver

    def list_exports(self, initiator) -> list[tuple[str, str]]:
        f = self.filer
        groups = set() if initiator.unix else self._igroups_of(initiator)
        out = []
        with f._lock:
            for v in f.pool.list_volumes():
                visible_serials = set()
                for o in f.pool.list_objects(v.name):
                    path = lun_path(v.name, o.name)
                    if o.kind == "lun" and self._active_refusal(path, o.meta, groups, initiator) is None:
                        visible_serials.add(o.meta.get("serial") or None)
                        out.append((path, f"LUN serial {o.meta.get('serial', '')}"))
                visible_serials.discard(None)
                for s in f.pool.list_snapshots(v.name):
                    for o in f.pool.list_objects(v.name, s.name):
                        if o.kind == "lun" and (initiator.unix or o.meta.get("serial") in visible_serials):
                            out.append((lun_path(v.name, o.name, s.name), f"snapshot {s.name} (read-only)"))
        return out

    def open_export(self, name: str, initiator):
        from .blockdev import LunDevice

        f = self.filer
        with f._lock:
            t = self._decide(name, initiator)
            return LunDevice(f, t.volume, t.lun, t.snapshot)

    def authorize(self, name: str, initiator, device) -> str | None:
        """None if the connection that opened ``device`` as ``name`` may go
        on; else why not (for the log)."""
        f = self.filer
        with f._lock:
            try:
                t = self._decide(name, initiator)
            except ExportNotFound as e:
                return e.reason
        h = getattr(device, "h", None)
        if h is not None and getattr(h, "oid", t.oid) != t.oid:
            return f"{name} now names another LUN"
        return None

    def on_revoke(self, callback, recheck=None) -> None:
        self.filer.on_revoke(callback)
        on_access = getattr(self.filer, "on_access_change", None)
        if on_access is not None:
            on_access(recheck or callback)

    def who(self, path: str) -> dict:
        """The igroups ``path`` (an active LUN path) is mapped to, their
        members, and whether the LUN is online: who would be allowed."""
        from .lookup import resolve

        f = self.filer
        with f._lock:
            vol, snap, lun, o = resolve(f, path, allow_snapshot=True)
            if snap is not None:
                active = self._lun_with_serial(vol, o.meta.get("serial"))
                meta = active.meta if active is not None else {"online": False, "maps": []}
                of = lun_path(vol, active.name) if active is not None else None
            else:
                meta, of = o.meta, path
            groups = []
            for m in meta.get("maps") or []:
                rec = f.pool.kv_get(_igroup.SCOPE, m["igroup"]) or {}
                groups.append(
                    {
                        "igroup": m["igroup"],
                        "lun_id": m.get("lun_id"),
                        "initiators": rec.get("initiators", []),
                    }
                )
            return {
                "path": path,
                "authorized_by": of,
                "online": bool(meta.get("online", True)) and of is not None,
                "igroups": groups,
            }


def _how_matched(member: str) -> str:
    net = (
        _igroup._network(member)
        if ("/" in member or member.replace(".", "").isdigit() or ":" in member)
        else None
    )
    if net is not None:
        return "address" if net.num_addresses == 1 else "network"
    return "TLS certificate name"


def who(filer, path: str | None = None, connections: list[dict] | None = None) -> dict:
    """What ``coppice nbd who [PATH]`` shows: for a LUN path, the igroups
    that authorize it and how each member is matched; the connections the
    running target holds (to that LUN and its snapshot LUNs when a path is
    given); ``connections`` None means no target runs here."""
    import datetime as _dt

    out: dict = {"lun": None, "connections": None}
    serial = vol = None
    if path is not None:
        res = FilerExportResolver(filer)
        lun = res.who(path)
        for g in lun["igroups"]:
            g["members"] = [{"initiator": m, "matched_by": _how_matched(m)} for m in g.pop("initiators")]
        out["lun"] = lun
        vol, _snap, _name = parse_lun_path(path, allow_snapshot=True)
        with filer._lock:
            auth = lun["authorized_by"]
            if auth is not None:
                serial = filer.pool.object_info(*parse_lun_path(auth)[::2]).meta.get("serial")
    if connections is not None:
        rows = []
        for c in connections:
            export = c.get("export")
            if path is not None and export != path:
                try:
                    v, s, n = parse_lun_path(export, allow_snapshot=True)
                    related = v == vol and s is not None and serial is not None
                    related = related and filer.pool.object_info(v, n, s).meta.get("serial") == serial
                except Exception:
                    related = False
                if not related:
                    continue
            since = c.get("since")
            rows.append(
                {
                    "export": export,
                    "address": "unix socket" if c.get("unix") else c.get("address"),
                    "certificate_name": c.get("name"),
                    "tls": bool(c.get("tls")),
                    "state": "handshake" if c.get("handshaking") else "open",
                    "since": _dt.datetime.fromtimestamp(since, _dt.UTC).isoformat(timespec="seconds")
                    if since
                    else None,
                }
            )
        out["connections"] = rows
    return out
