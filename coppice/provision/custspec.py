"""Customization specs: how each guest gets its own identity (VirtualCenter's
idea, cloud-init's NoCloud format).

Contract:

* A spec is a record in the pool (``registry.CUSTSPEC``), created whole and
  checked at creation: the hostname rule renders to a valid host name, the
  SSH public key file is readable (its contents are stored, so the file may
  go away later), the password hash looks like a crypt(3) hash, the network
  is ``dhcp`` or ``static:POOL`` with POOL a CIDR network, optionally
  ``static:NET,gw=GW,dns=DNS1+DNS2,first=ADDR``.
* ``render(spec, vm, n, instance_id, mac, address, template)`` is pure: it returns
  the ``seed.SeedConfig`` of one guest (meta-data: fresh instance-id and
  local-hostname; user-data: #cloud-config with hostname, user, keys,
  password, runcmd; network-config v2 matched on the VM's MAC).
* Static addresses are leased per (spec, address) in the pool
  (``allocate_address``/``release_address``), the lowest free one first;
  leases are released when the VM is destroyed or rolled back.

The hostname rule is ``vm-name`` (the VM's name, '_' turned into '-') or a
pattern (``pattern`` module) with ``{vm}``, ``{n}`` (the VM's number in its
batch, ``{n:03}`` zero-padded) and ``{template}``, e.g. ``{vm}.lab.example``
or ``node-{n:02}``; nothing else (no attribute access, bounded width).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time

from . import registry
from .import_dir import ImportPolicy
from .pattern import PatternError, compile_pattern
from .provisioning_errors import (
    AddressPoolExhausted,
    BadCustSpec,
    CustSpecExists,
    CustSpecNotFound,
    HostPathRefused,
    SSHKeyUnreadable,
)
from .seed import SeedConfig, check_hostname

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}\Z")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
_CRYPT = re.compile(r"\$(1|2[abxy]?|5|6|y|gy|7)\$[./A-Za-z0-9$=,]+\Z")
_KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


@dataclasses.dataclass
class CustSpec:
    name: str
    hostname: str = "vm-name"
    user: str | None = None
    ssh_keys: list[str] = dataclasses.field(default_factory=list)  # the key file's lines, read at creation
    password_hash: str | None = None
    network: str = "dhcp"
    runcmd: list[str] = dataclasses.field(default_factory=list)
    created: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CustSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


# ---- pure parts -----------------------------------------------------------------------------


HOSTNAME_FIELDS = ("vm", "n", "template")


def hostname_pattern(rule: str):
    """The compiled hostname rule (``pattern`` module: {vm}, {n}, {n:03}, {template})."""
    try:
        return compile_pattern(rule, set(HOSTNAME_FIELDS))
    except PatternError as e:
        raise BadCustSpec(
            detail=f"hostname pattern {rule!r} is invalid: {e}. Use {{vm}}, {{n}} (or {{n:03}}) and "
            "{template}, e.g. '{vm}.lab.example' or 'node-{n:02}'"
        ) from None


def hostname_for(rule: str, vm: str, n: int = 0, template: str | None = None) -> str:
    """The guest host name a rule gives VM ``vm`` (number ``n`` in its batch, made from ``template``)."""
    base = vm.replace("_", "-").lower()
    if rule in (None, "", "vm-name"):
        return base
    tname = (template or "template").replace("_", "-").lower()
    return hostname_pattern(rule).expand(vm=base, n=n, template=tname).lower()


def parse_network(text: str) -> dict:
    """'dhcp' -> {mode: dhcp}; 'static:NET[,gw=A][,dns=A+B][,first=A]' -> dict with an ip_network."""
    if text in (None, "", "dhcp"):
        return {"mode": "dhcp"}
    if not text.startswith("static:"):
        raise BadCustSpec(
            detail=f"network {text!r} is invalid: use dhcp or static:NETWORK/PREFIX"
            "[,gw=ADDR][,dns=ADDR+ADDR][,first=ADDR]"
        )
    parts = text[len("static:") :].split(",")
    try:
        net = ipaddress.ip_network(parts[0], strict=False)
    except ValueError as e:
        raise BadCustSpec(
            detail=f"network {text!r}: {parts[0]!r} is not a network ({e}); e.g. static:192.0.2.0/24"
        ) from None
    hosts = net.num_addresses - (2 if net.version == 4 and net.prefixlen < 31 else 0)
    out = {"mode": "static", "network": net, "gateway": None, "dns": [], "first": None}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        try:
            if k == "gw":
                out["gateway"] = ipaddress.ip_address(v)
            elif k == "dns":
                out["dns"] = [ipaddress.ip_address(x) for x in v.split("+") if x]
            elif k == "first":
                out["first"] = ipaddress.ip_address(v)
            else:
                raise BadCustSpec(detail=f"network {text!r}: unknown option {k!r} (use gw=, dns=, first=)")
        except ValueError as e:
            raise BadCustSpec(detail=f"network {text!r}: {v!r} is not an address ({e})") from None
    if out["gateway"] is None and hosts >= 2:
        out["gateway"] = next(iter(net.hosts()))
    for k in ("gateway", "first"):
        if out[k] is not None and out[k] not in net:
            raise BadCustSpec(detail=f"network {text!r}: {k} {out[k]} is outside {net}")
    return out


def candidate_addresses(net_spec: dict):
    net = net_spec["network"]
    first = net_spec["first"]
    for a in net.hosts():
        if a == net_spec["gateway"] or a in net_spec["dns"]:
            continue
        if first is not None and a < first:
            continue
        yield a


def render(
    spec: CustSpec,
    vm: str,
    n: int,
    instance_id: str,
    mac: str | None = None,
    address: str | None = None,
    template: str | None = None,
) -> SeedConfig:
    """The NoCloud seed of VM ``vm``: pure, no store."""
    hostname = hostname_for(spec.hostname, vm, n, template)
    check_hostname(hostname)
    ud: dict = {"hostname": hostname.split(".")[0], "preserve_hostname": False}
    if "." in hostname:
        ud["fqdn"] = hostname
    if spec.user:
        u: dict = {"name": spec.user, "shell": "/bin/sh", "sudo": "ALL=(ALL) NOPASSWD:ALL", "groups": "sudo"}
        if spec.ssh_keys:
            u["ssh_authorized_keys"] = list(spec.ssh_keys)
        if spec.password_hash:
            u["passwd"] = spec.password_hash
            u["lock_passwd"] = False
        ud["users"] = ["default", u]
    elif spec.ssh_keys:
        ud["ssh_authorized_keys"] = list(spec.ssh_keys)
    if spec.password_hash and not spec.user:
        ud["chpasswd"] = {"expire": False, "users": [{"name": "root", "password": spec.password_hash}]}
    if spec.runcmd:
        ud["runcmd"] = list(spec.runcmd)
    nc = None
    net = parse_network(spec.network)
    if net["mode"] == "static":
        if address is None:
            raise BadCustSpec(detail=f"spec {spec.name} has a static network but VM {vm} has no address")
        eth: dict = {"addresses": [f"{address}/{net['network'].prefixlen}"]}
        if mac:
            eth = {"match": {"macaddress": mac}, "set-name": "eth0", **eth}
        if net["gateway"] is not None:
            eth["routes"] = [{"to": "default", "via": str(net["gateway"])}]
        if net["dns"]:
            eth["nameservers"] = {"addresses": [str(a) for a in net["dns"]]}
        nc = {"version": 2, "ethernets": {"eth0": eth}}
    elif mac:
        nc = {
            "version": 2,
            "ethernets": {"eth0": {"match": {"macaddress": mac}, "set-name": "eth0", "dhcp4": True}},
        }
    return SeedConfig(instance_id=instance_id, hostname=hostname, user_data=ud, network_config=nc)


def read_ssh_key(path: str, policy: ImportPolicy | None = None) -> list[str]:
    """The public keys of a host file opened under ``policy`` (default: the caller's own files)."""
    try:
        with (policy or ImportPolicy.local()).open(path, "SSH public key file") as hf:
            data = hf.read(1 << 20)
    except HostPathRefused as e:
        raise SSHKeyUnreadable(path=path, why=e.kwargs["why"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SSHKeyUnreadable(path=path, why="it is not UTF-8 text") from None
    return parse_ssh_keys(text, path)


def parse_ssh_keys(text: str, source: str = "the request") -> list[str]:
    """OpenSSH public key lines (comments and blank lines skipped); an error names the
    line, never its content (a private key must not reach a log or a response)."""
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)]
    keys = [(i, k) for i, k in lines if k and not k.startswith("#")]
    if not keys:
        raise SSHKeyUnreadable(path=source, why="it holds no key")
    for i, k in keys:
        if not k.startswith(_KEY_TYPES) or "PRIVATE KEY" in k or "\0" in k:
            raise SSHKeyUnreadable(path=source, why=f"line {i} is not an OpenSSH public key line")
    return [k for _, k in keys]


def build(
    name: str,
    hostname: str = "vm-name",
    user: str | None = None,
    ssh_key_file: str | None = None,
    password_hash: str | None = None,
    network: str = "dhcp",
    runcmd=(),
    ssh_keys=(),
    policy: ImportPolicy | None = None,
) -> CustSpec:
    """A checked spec (reads the key file under ``policy``; ``ssh_keys`` are key lines
    given as text, e.g. uploaded by the CLI); stores nothing."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadCustSpec(
            detail=f"name {name!r} is invalid: use letters, digits, '_', '.', '-', "
            "starting with a letter, at most 64 characters"
        )
    check_hostname(hostname_for(hostname, "vm-0", 0))
    if user is not None and not _USER.match(user):
        raise BadCustSpec(
            detail=f"user {user!r} is invalid: use lower-case letters, digits, '_' and '-', "
            "starting with a letter, at most 32 characters"
        )
    keys = read_ssh_key(ssh_key_file, policy) if ssh_key_file else []
    if ssh_keys:
        keys += parse_ssh_keys("\n".join(ssh_keys))
    if password_hash is not None and not _CRYPT.match(password_hash):
        raise BadCustSpec(
            detail="the password hash is not a crypt(3) hash; make one with "
            "`openssl passwd -6` or `mkpasswd -m sha-512` (never pass a clear-text password)"
        )
    parse_network(network)
    runcmd = [str(c) for c in runcmd]
    if any("\n" in c for c in runcmd):
        raise BadCustSpec(detail="a --runcmd command may not hold a newline; give several --runcmd")
    return CustSpec(
        name=name,
        hostname=hostname or "vm-name",
        user=user,
        ssh_keys=keys,
        password_hash=password_hash,
        network=network or "dhcp",
        runcmd=runcmd,
        created=time.time(),
    )


# ---- stored specs ---------------------------------------------------------------------------


def create(filer, name: str, **kw) -> dict:
    spec = build(name, **kw)
    with filer.transaction():
        if registry.get(filer, registry.CUSTSPEC, name) is not None:
            raise CustSpecExists(name=name)
        registry.put(filer, registry.CUSTSPEC, name, spec.to_dict())
    return show(filer, name)


def get(filer, name: str) -> CustSpec:
    d = registry.get(filer, registry.CUSTSPEC, name)
    if d is None:
        raise CustSpecNotFound(name=name)
    return CustSpec.from_dict(d)


def _public(d: dict, filer) -> dict:
    d = dict(d)
    d["ssh_keys"] = len(d.get("ssh_keys") or [])
    d["password"] = "set" if d.pop("password_hash", None) else "none"
    d["leases"] = sum(1 for k, _ in registry.items(filer, registry.IPALLOC) if k.split("/")[0] == d["name"])
    return d


def show(filer, name: str) -> dict:
    return _public(get(filer, name).to_dict(), filer)


def list_(filer) -> list[dict]:
    return [_public(d, filer) for _, d in registry.items(filer, registry.CUSTSPEC)]


def delete(filer, name: str) -> None:
    with filer.transaction():
        get(filer, name)
        registry.delete(filer, registry.CUSTSPEC, name)


def allocate_address(filer, spec: CustSpec, vm: str) -> str | None:
    """Lease the lowest free address of a static spec to ``vm`` (None for DHCP)."""
    net = parse_network(spec.network)
    if net["mode"] != "static":
        return None
    with filer.transaction():
        leased = {
            k.split("/", 1)[1]
            for k, _ in registry.items(filer, registry.IPALLOC)
            if k.split("/", 1)[0] == spec.name
        }
        for a in candidate_addresses(net):
            if str(a) not in leased:
                registry.put(filer, registry.IPALLOC, f"{spec.name}/{a}", vm)
                return str(a)
    raise AddressPoolExhausted(pool=spec.network, spec=spec.name, vm=vm)


def release_address(filer, spec_name: str | None, address: str | None) -> None:
    if spec_name and address:
        registry.delete(filer, registry.IPALLOC, f"{spec_name}/{address}")
