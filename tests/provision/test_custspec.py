"""Customization specs: checked at creation, rendered per VM."""

import pytest

from coppice.provision import custspec as cs
from coppice.provision.provisioning_errors import AddressPoolExhausted, BadCustSpec, SSHKeyUnreadable

from .prov_helpers import filer  # noqa: F401


def test_render_carries_hostname_user_key_runcmd(tmp_path):
    # the seed of VM web01: its hostname, the user with the key and hash, runcmd, DHCP on its MAC
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3Nza test@host\n")
    spec = cs.build("s", user="ops", ssh_key_file=str(key), password_hash="$6$salt$hash", runcmd=["touch /x"])
    cfg = cs.render(spec, "web01", 1, "iid-1", "52:54:00:00:00:01")
    assert cfg.hostname == "web01" and cfg.instance_id == "iid-1"
    u = cfg.user_data["users"][1]
    assert u["name"] == "ops" and u["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3Nza test@host"]
    assert u["passwd"] == "$6$salt$hash" and cfg.user_data["runcmd"] == ["touch /x"]
    assert cfg.network_config["ethernets"]["eth0"]["match"]["macaddress"] == "52:54:00:00:00:01"


def test_hostname_pattern():
    # PATTERN with {vm} and {n}; '_' in a VM name becomes '-'
    assert cs.hostname_for("{vm}.lab.example", "db_1", 1) == "db-1.lab.example"
    assert cs.hostname_for("node-{n:02}", "x", 7) == "node-07"
    with pytest.raises(BadCustSpec):
        cs.build("s", hostname="{nope}")


@pytest.mark.parametrize(
    "kw",
    [
        dict(password_hash="secret"),
        dict(network="static:banana"),
        dict(network="dhcp6"),
        dict(user="Bad User"),
        dict(runcmd=["a\nb"]),
    ],
)
def test_bad_specs(kw):
    # a clear error for each bad field
    with pytest.raises(BadCustSpec):
        cs.build("s", **kw)


def test_key_file_checked_at_creation(tmp_path):
    # missing, unreadable-as-key (private key) files are refused
    with pytest.raises(SSHKeyUnreadable):
        cs.build("s", ssh_key_file=str(tmp_path / "none.pub"))
    priv = tmp_path / "id"
    priv.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    with pytest.raises(SSHKeyUnreadable):
        cs.build("s", ssh_key_file=str(priv))


def test_static_pool_leases(filer):
    # static:NET leases the lowest free address, skips the gateway, releases, and runs out
    cs.create(filer, "st", network="static:192.0.2.0/29")
    spec = cs.get(filer, "st")
    got = [cs.allocate_address(filer, spec, f"vm{i}") for i in range(5)]
    assert got == ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"]
    with pytest.raises(AddressPoolExhausted):
        cs.allocate_address(filer, spec, "vm6")
    cs.release_address(filer, "st", "192.0.2.4")
    assert cs.allocate_address(filer, spec, "vm7") == "192.0.2.4"
    cfg = cs.render(spec, "vm7", 1, "iid-7", "52:54:00:00:00:07", "192.0.2.4")
    eth = cfg.network_config["ethernets"]["eth0"]
    assert eth["addresses"] == ["192.0.2.4/29"] and eth["routes"][0]["via"] == "192.0.2.1"
