"""The NoCloud seed ISO: rendered files, read back by pycdlib and xorriso."""

import subprocess

import pytest

from coppice.provision.errors import BadSeed
from coppice.provision.seed import SeedConfig, build_seed_iso, read_seed_iso, render_seed_files, to_yaml


def test_round_trip_pycdlib(tmp_path):
    # every file comes back byte for byte, under its real (Rock Ridge) name, label cidata
    cfg = SeedConfig(
        instance_id="iid-0001",
        hostname="web001",
        user_data={
            "users": [{"name": "ops", "ssh_authorized_keys": ["ssh-ed25519 AAAA k"]}],
            "runcmd": ["echo hello"],
        },
    )
    raw = build_seed_iso(cfg, tmp_path / "seed.iso")
    assert (tmp_path / "seed.iso").read_bytes() == raw
    files = read_seed_iso(raw)
    assert files[""] == "cidata"
    assert files["meta-data"] == b"instance-id: iid-0001\nlocal-hostname: web001\n"
    assert files["user-data"].startswith(b"#cloud-config\n")
    assert b"  - name: ops\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAA k\n" in files["user-data"]
    assert files["network-config"].startswith(b"version: 2\n")
    assert set(files) == {"", "meta-data", "user-data", "network-config"}


def test_round_trip_xorriso(tmp_path):
    # an independent reader sees the label and the three names (Rock Ridge and Joliet)
    path = tmp_path / "seed.iso"
    build_seed_iso(SeedConfig(instance_id="i-1", hostname="h1", user_data="#!/bin/sh\necho hi\n"), path)
    pvd = subprocess.run(["xorriso", "-indev", str(path), "-pvd_info"], capture_output=True, text=True)
    assert "Volume Id    : cidata" in pvd.stdout
    for mode in ("-rockridge", "-joliet"):
        ls = subprocess.run(
            ["xorriso", mode, "on", "-indev", str(path), "-ls", "/"], capture_output=True, text=True
        )
        assert ls.stdout.split() == ["'meta-data'", "'network-config'", "'user-data'"], (mode, ls.stdout)
    out = subprocess.run(
        ["xorriso", "-indev", str(path), "-osirrox", "on", "-extract", "/user-data", str(tmp_path / "ud")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ud").read_text() == "#!/bin/sh\necho hi\n"


def test_string_user_data_verbatim():
    # a user-data string (script, MIME, hand-written YAML) is stored as given
    files = render_seed_files(SeedConfig("i", "h", user_data="#cloud-config\nfoo: 1\n"))
    assert files["user-data"] == b"#cloud-config\nfoo: 1\n"


def test_network_config_default_and_custom():
    # default network-config is DHCP on every ethernet; a dict is rendered as YAML
    assert b"dhcp4: true" in render_seed_files(SeedConfig("i", "h"))["network-config"]
    nc = {"version": 2, "ethernets": {"eth0": {"addresses": ["10.0.0.5/24"]}}}
    assert (
        render_seed_files(SeedConfig("i", "h", network_config=nc))["network-config"]
        == b"version: 2\nethernets:\n  eth0:\n    addresses:\n      - 10.0.0.5/24\n"
    )


def test_yaml_quotes_what_yaml_would_misread():
    # strings YAML would read as bools, numbers or null, or with special characters, are quoted
    assert (
        to_yaml({"a": "yes", "b": "1.5", "c": "null", "d": "x: y", "e": "plain text", "f": True})
        == 'a: "yes"\nb: "1.5"\nc: "null"\nd: "x: y"\ne: plain text\nf: true\n'
    )


@pytest.mark.parametrize("hostname", ["", "-bad", "bad-", "has space", "a" * 64, "under_score", "x.."])
def test_bad_hostname_refused(hostname):
    # an invalid hostname fails before any image is made
    with pytest.raises(BadSeed):
        build_seed_iso(SeedConfig("iid", hostname))


def test_bad_instance_id_refused():
    with pytest.raises(BadSeed):
        build_seed_iso(SeedConfig("iid with space", "ok"))


def test_not_an_iso():
    with pytest.raises(BadSeed):
        read_seed_iso(b"\0" * 70000)
