"""/custspecs: customization specs (each guest's identity, as cloud-init NoCloud seeds)."""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Text, build_router


class CustSpecCreate(Model):
    name: Name
    hostname: Text = Field("vm-name", description="vm-name or a pattern with {vm} {n}")
    user: Name | None = None
    ssh_key_file: Text | None = Field(
        None, description="public key file in the daemon's --import-dir (read now)"
    )
    ssh_keys: list[Text] = Field(default_factory=list, max_length=256, description="public key lines")
    password_hash: Text | None = None
    network: Text = Field("dhcp", description="dhcp or static:NET[,gw=A][,dns=A+B]")
    runcmd: list[Text] = Field(default_factory=list, max_length=256)


router = build_router("custspecs", {"custspec_create": CustSpecCreate})
