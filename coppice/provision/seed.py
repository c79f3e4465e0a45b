"""cloud-init NoCloud seeds: one small ISO 9660 image per guest.

Contract: ``build_seed_iso(SeedConfig)`` renders ``meta-data``,
``user-data`` and ``network-config`` and returns the bytes of an ISO 9660
image with volume label ``cidata`` (Joliet + Rock Ridge, so every reader —
cloud-init, the tiny guest's busybox, Windows' cloudbase-init — sees the
real file names). Pure: it touches no disk unless given ``path`` (then the
file is written atomically) and needs no hypervisor; the bytes are what the
provisioner stores in a VM's clone and serves like its disks.

Guarantees:
- ``meta-data`` always carries ``instance-id`` and ``local-hostname``; the
  hostname is checked against RFC 1123 and the instance id may not hold
  whitespace, so a bad spec fails here with ``BadSeed``, before anything
  exists.
- ``user-data`` given as a dict is rendered as ``#cloud-config`` YAML; a
  string is stored verbatim (a shell script, a MIME multipart, a
  cloud-config written by hand).
- ``read_seed_iso(bytes)`` reads a seed back (tests, ``vm show``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pycdlib

from .errors import BadSeed

VOLUME_LABEL = "cidata"

# ISO 9660 level-3 names (d-characters only) beside the real names Rock
# Ridge and Joliet carry.
_FILES = (
    ("meta-data", "/META_DATA.;1"),
    ("user-data", "/USER_DATA.;1"),
    ("network-config", "/NETWORK_CONFIG.;1"),
)

DEFAULT_NETWORK_CONFIG: dict[str, Any] = {
    "version": 2,
    "ethernets": {"all": {"match": {"name": "e*"}, "dhcp4": True}},
}

_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclasses.dataclass
class SeedConfig:
    """What one guest learns from its seed."""

    instance_id: str
    hostname: str
    user_data: str | dict | None = None  # dict -> #cloud-config
    network_config: str | dict | None = None  # None -> DHCP on every ethernet
    extra_meta_data: dict[str, str] = dataclasses.field(default_factory=dict)


def check_hostname(hostname: str) -> None:
    if not hostname or len(hostname) > 253:
        raise BadSeed(detail=f"hostname {hostname!r} must be 1 to 253 characters")
    for label in hostname.split("."):
        if not _HOST_LABEL.match(label):
            raise BadSeed(
                detail=f"hostname {hostname!r} is not a valid host name: use letters, "
                "digits and '-', labels of at most 63 characters separated by "
                "'.', not starting or ending with '-'"
            )


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    # Plain only when YAML cannot read it as anything but this string.
    if (
        re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./ -]*", s)
        and not s.endswith(" ")
        and s.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "y", "n", "~")
        and not re.fullmatch(r"[-+]?[0-9._]+(e[-+]?[0-9]+)?", s, re.I)
    ):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj: Any, indent: int = 0) -> str:
    """A small block-style YAML emitter for dicts, lists and scalars (all cloud-config needs)."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            key = _yaml_scalar(k)
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{key}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, (dict, list)):
                out.append(f"{pad}{key}: {'{}' if isinstance(v, dict) else '[]'}\n")
            else:
                out.append(f"{pad}{key}: {_yaml_scalar(v)}\n")
    elif isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                out.append(f"{pad}- {inner[indent + 2 :]}")
            else:
                out.append(
                    f"{pad}- {_yaml_scalar(v) if not isinstance(v, (dict, list)) else ('{}' if isinstance(v, dict) else '[]')}\n"
                )
    else:
        out.append(f"{pad}{_yaml_scalar(obj)}\n")
    return "".join(out)


def render_meta_data(cfg: SeedConfig) -> str:
    check_hostname(cfg.hostname)
    if not cfg.instance_id or re.search(r"\s", cfg.instance_id):
        raise BadSeed(detail=f"instance-id {cfg.instance_id!r} must be non-empty with no whitespace")
    meta = {"instance-id": cfg.instance_id, "local-hostname": cfg.hostname}
    for k, v in cfg.extra_meta_data.items():
        if k in meta:
            raise BadSeed(detail=f"extra meta-data may not override {k}")
        meta[k] = v
    return to_yaml(meta)


def render_user_data(cfg: SeedConfig) -> str:
    ud = cfg.user_data
    if ud is None:
        return "#cloud-config\n{}\n"
    if isinstance(ud, dict):
        return "#cloud-config\n" + to_yaml(ud)
    if isinstance(ud, str):
        return ud
    raise BadSeed(detail=f"user-data must be a dict or a string, not {type(ud).__name__}")


def render_network_config(cfg: SeedConfig) -> str:
    nc = DEFAULT_NETWORK_CONFIG if cfg.network_config is None else cfg.network_config
    if isinstance(nc, dict):
        return to_yaml(nc)
    if isinstance(nc, str):
        return nc
    raise BadSeed(detail=f"network-config must be a dict or a string, not {type(nc).__name__}")


def render_seed_files(cfg: SeedConfig) -> dict[str, bytes]:
    return {
        "meta-data": render_meta_data(cfg).encode(),
        "user-data": render_user_data(cfg).encode(),
        "network-config": render_network_config(cfg).encode(),
    }


def build_seed_iso(cfg: SeedConfig, path: str | os.PathLike | None = None) -> bytes:
    """The seed as ISO 9660 bytes; also written to path (atomically) when given."""
    files = render_seed_files(cfg)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, sys_ident="LINUX", joliet=3, rock_ridge="1.09")
    for name, iso_path in _FILES:
        data = files[name]
        iso.add_fp(
            io.BytesIO(data), len(data), iso_path, rr_name=name, joliet_path="/" + name, file_mode=0o100444
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    raw = out.getvalue()
    if path is not None:
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, p)
    return raw


def read_seed_iso(data: bytes) -> dict[str, bytes]:
    """The files of a seed image by their Rock Ridge names, plus the volume label under ''."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(data))
    except pycdlib.pycdlibexception.PyCdlibException as e:
        raise BadSeed(detail=f"not an ISO 9660 image: {e}") from e
    try:
        files: dict[str, bytes] = {"": iso.pvd.volume_identifier.rstrip(b" ").decode()}  # type: ignore[dict-item]
        for child in iso.list_children(iso_path="/"):
            if child.is_dot() or child.is_dotdot() or not child.is_file():
                continue
            name = child.rock_ridge.name().decode() if child.rock_ridge else child.file_identifier().decode()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path="/" + name)
            files[name] = buf.getvalue()
        return files
    finally:
        iso.close()
