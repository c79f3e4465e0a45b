"""Initiator groups: who may see the LUNs mapped to them.

Contract: an igroup is a pool kv record (scope ``igroup``, key = name):
``{"name", "protocol", "ostype", "initiators": [...]}``. A member is an
initiator name (an iSCSI-style name, a TLS client certificate's CN/SAN or a
PSK identity; matched case-insensitively) or an IP address or network in
CIDR form (matches a plain-TCP peer's address). ``matches(rec, initiator)``
is the one access test the export resolver uses. Destroying an igroup LUNs
are mapped to is refused unless ``force`` (which unmaps them, in the same
transaction). Renaming rewrites the maps that name it.
"""

from __future__ import annotations

import ipaddress

from .errors import (
    BadInitiator,
    BadOption,
    IgroupBusy,
    IgroupExists,
    InitiatorExists,
    InitiatorNotFound,
)
from .lookup import IGROUP_SCOPE, require_igroup
from .lun_map import all_maps, note_lun, unmap_lun
from .names import check_igroup, lun_path, parse_lun_path

SCOPE = IGROUP_SCOPE
PROTOCOLS = ("iscsi", "fcp", "nbd", "mixed")
OSTYPES = ("linux", "windows", "vmware", "hyper_v", "xen", "solaris", "aix", "hpux", "netware", "openvms")


def _network(text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def normalize_initiator(text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadInitiator(initiator=text, why="it is empty")
    t = text.strip()
    if any(c.isspace() for c in t) or not t.isprintable():
        raise BadInitiator(initiator=text, why="it contains spaces or control characters")
    if len(t) > 223:
        raise BadInitiator(initiator=text[:40] + "...", why="it is longer than 223 characters")
    if "/" in t or t.replace(".", "").isdigit() or ":" in t and _network(t) is not None:
        net = _network(t)
        if net is None:
            raise BadInitiator(initiator=text, why="it looks like an address but is not a valid one")
        return str(net) if "/" in t else str(net.network_address)
    return t


def nbd_identity_hint(rec: dict) -> str | None:
    """Why a plain NBD client cannot match this igroup, or None when one can.

    An igroup of names only (iSCSI-style IQNs, as a SAN administrator
    writes them) matches an NBD client only by its TLS certificate's name;
    the first thing most readers try, a plain-TCP `qemu-img` from this host,
    is then refused as "not found". This says so at creation time.
    """
    members = rec.get("initiators", [])
    if not members or any(_network(m) is not None for m in members):
        return None
    return (
        f"note: igroup {rec['name']} holds names only. Coppice's target speaks NBD, which identifies a "
        "client by its address (a plain-TCP client), by the name in its TLS client certificate, or by "
        f"the pool's Unix socket. {members[0]} matches only a client presenting a certificate with that "
        "name (`coppice tls client`); a plain-TCP client such as `qemu-img info nbd://127.0.0.1:10809/...` "
        f"matches none of them. To admit this host's plain-TCP clients: `coppice igroup add {rec['name']} "
        "127.0.0.1` (or a network such as 10.0.0.0/8)."
    )


def create(f, name, initiators, ostype="linux", protocol="iscsi") -> dict:
    check_igroup(name)
    if ostype not in OSTYPES:
        raise BadOption(detail=f"igroup ostype {ostype!r} is invalid: use one of {', '.join(OSTYPES)}")
    if protocol not in PROTOCOLS:
        raise BadOption(detail=f"igroup protocol {protocol!r} is invalid: use one of {', '.join(PROTOCOLS)}")
    members = []
    for i in initiators:
        n = normalize_initiator(i)
        if n.lower() in (m.lower() for m in members):
            raise InitiatorExists(initiator=n, name=name)
        members.append(n)
    with f.transaction():
        if f.pool.kv_get(SCOPE, name) is not None:
            raise IgroupExists(name=name)
        rec = {"name": name, "protocol": protocol, "ostype": ostype, "initiators": members}
        f.pool.kv_put(SCOPE, name, rec)
    return show(f, name)[0]


def _mapped(f, name) -> list[str]:

    return [m["path"] for m in all_maps(f, name)]


def destroy(f, name, force=False) -> None:

    require_igroup(f, name)
    with f.transaction():
        mapped = _mapped(f, name)
        if mapped and not force:
            raise IgroupBusy(name=name, luns=", ".join(mapped))
        for p in mapped:
            unmap_lun(f, p, name)
        f.pool.kv_delete(SCOPE, name)


def _revoke_mapped(f, name):
    for p in _mapped(f, name):
        f.revoke_later(p, access_only=True)


def add(f, name, initiator) -> dict:
    rec = require_igroup(f, name)
    n = normalize_initiator(initiator)
    with f.transaction():
        if n.lower() in (m.lower() for m in rec["initiators"]):
            raise InitiatorExists(initiator=n, name=name)
        rec["initiators"].append(n)
        f.pool.kv_put(SCOPE, name, rec)
    return show(f, name)[0]


def remove(f, name, initiator) -> dict:
    rec = require_igroup(f, name)
    n = normalize_initiator(initiator)
    with f.transaction():
        keep = [m for m in rec["initiators"] if m.lower() != n.lower()]
        if len(keep) == len(rec["initiators"]):
            raise InitiatorNotFound(initiator=initiator, name=name)
        rec["initiators"] = keep
        f.pool.kv_put(SCOPE, name, rec)
        # the removed host may be connected to LUNs it no longer may see
        _revoke_mapped(f, name)
    return show(f, name)[0]


def rename(f, old, new) -> None:
    check_igroup(new)
    rec = require_igroup(f, old)
    if old == new:
        return
    with f.transaction():
        if f.pool.kv_get(SCOPE, new) is not None:
            raise IgroupExists(name=new)
        for path in dict.fromkeys(_mapped(f, old)):
            vol, _, lun = parse_lun_path(path)
            o = f.pool.object_info(vol, lun)
            maps = o.meta.get("maps") or []
            new_maps = [dict(m, igroup=new) if m["igroup"] == old else m for m in maps]
            f.pool.set_object_meta(vol, lun, dict(o.meta, maps=new_maps))
            note_lun(f, vol, lun)
        rec["name"] = new
        f.pool.kv_delete(SCOPE, old)
        f.pool.kv_put(SCOPE, new, rec)


def set_ostype(f, name, ostype) -> dict:
    rec = require_igroup(f, name)
    if ostype not in OSTYPES:
        raise BadOption(detail=f"igroup ostype {ostype!r} is invalid: use one of {', '.join(OSTYPES)}")
    with f.transaction():
        rec["ostype"] = ostype
        f.pool.kv_put(SCOPE, name, rec)
    return show(f, name)[0]


def show(f, name=None) -> list[dict]:

    if name is not None:
        recs = [require_igroup(f, name)]
    else:
        recs = [r for _, r in f.pool.kv_items(SCOPE)]
    out = []
    for r in recs:
        out.append(dict(r, luns=[{"path": m["path"], "lun_id": m["lun_id"]} for m in all_maps(f, r["name"])]))
    return out


def matches(rec: dict, initiator) -> bool:
    """Does ``initiator`` (nbd.blockdev.Initiator) belong to igroup ``rec``?"""
    name = (initiator.name or "").lower()
    addr = None
    if initiator.address:
        try:
            addr = ipaddress.ip_address(initiator.address.split("%")[0])
        except ValueError:
            addr = None
        if addr is not None and addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
    for m in rec.get("initiators", []):
        net = _network(m) if ("/" in m or m.replace(".", "").isdigit() or ":" in m) else None
        if net is not None:
            if addr is not None and addr.version == net.version and addr in net:
                return True
        elif name and m.lower() == name:
            return True
    return False


__all__ = ["create", "destroy", "add", "remove", "rename", "show", "matches", "require_igroup", "lun_path"]
