"""The provisioner's commands (template, custspec, vm, datastore) print the
same with a live daemon as without one; through the daemon a batch is a job
and the VMs' disks point at the daemon's own NBD listener."""

from __future__ import annotations

import json
import re

from tests.api.conftest import Served
from tests.provision.prov_helpers import small_image


def script(image: str, keyfile: str) -> list[list[str]]:
    return [
        ["template", "import", "tpl1", "--image", image, "--memory", "128"],
        ["template", "import", "tpl1", "--image", image],  # exists
        ["template", "import", "bad name", "--image", image],
        ["template", "list"],
        ["template", "show", "tpl1"],
        ["template", "show", "nope"],
        [
            "custspec",
            "create",
            "cs1",
            "--hostname",
            "{vm}",
            "--user",
            "u1",
            "--ssh-key",
            keyfile,
            "--runcmd",
            "echo hi",
        ],
        ["custspec", "create", "cs2", "--ssh-key", keyfile + ".missing"],
        ["custspec", "create", "cs3", "--password-hash", "clear"],
        ["custspec", "list"],
        ["custspec", "show", "cs1"],
        ["custspec", "show", "nope"],
        ["vm", "provision", "--template", "tpl1", "--count", "2", "--name", "pdweb{n}", "--customize", "cs1"],
        ["vm", "provision", "--template", "nope", "--count", "1", "--name", "x{n}"],
        ["vm", "provision", "--template", "tpl1", "--count", "0", "--name", "x{n}"],
        ["vm", "provision", "--template", "tpl1", "--count", "1", "--name", "pdweb1"],  # exists
        ["vm", "provision", "--template", "tpl1", "--count", "1", "--name", "pdjs{n}", "--json"],
        ["vm", "list"],
        ["vm", "show", "pdweb1"],
        ["vm", "show", "nope"],
        ["vm", "refresh", "pdweb1"],
        ["vm", "recompose", "pdweb1", "--snapshot", "imported"],
        ["vm", "recompose", "pdweb1", "--snapshot", "nope"],
        ["vm", "destroy", "pdweb2"],
        ["vm", "show", "pdweb2"],
        ["datastore", "show"],
        ["datastore", "show", "pdweb1"],
        ["datastore", "rename", "pdweb1", "renamed"],
        ["datastore", "resignature", "pdweb1"],
        ["datastore", "show", "--json", "pdweb1"],
        ["datastore", "clone", "tpl_tpl1", "base", "dsc1", "--register", "--yes"],
        ["datastore", "clone", "tpl_tpl1", "nope", "dsc2"],
        ["datastore", "policy"],
        ["datastore", "policy", "off"],
        ["datastore", "policy", "never"],
        ["template", "delete", "tpl1"],  # VMs depend on it
        ["vm", "list"],
        ["vm", "show", "--json", "pdweb1"],
        ["vm", "destroy", "pdweb1"],
        ["vm", "destroy", "pdjs1"],
    ]


def _norm(text: str, pool: str, image_dir: str) -> str:
    # what differs between two runs: pool paths, times, durations, random identities, the NBD port
    text = text.replace(pool, "POOL").replace(image_dir, "IMG")
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    text = re.sub(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", "MAC", text)
    text = re.sub(r"\d+\.\d+(e-?\d+)?", "N", text)
    text = re.sub(r"\b[0-9a-f]{8,}\b", "HEX", text)
    text = re.sub(r"\b\d+:\d\d:\d\d\b", "H:MM:SS", text)
    text = re.sub(r'("(created|started|finished|updated|port|seconds|per_vm_seconds)": )\d+', r"\1N", text)
    text = re.sub(r"(iid-|i-)[0-9A-Za-z]+", r"\1X", text)
    text = re.sub(r"(port': |port=)\d+", r"\1N", text)
    text = re.sub(r"(nbd://[^\"\s]*:)\d+", r"\1N", text)
    return text


def _run_all(pool, cmds):
    from typer.testing import CliRunner

    from coppice.cli.main import app

    runner = CliRunner()
    out = []
    for c in cmds:
        r = runner.invoke(
            app,
            ["--pool", pool, *c],
            env={
                "COPPICE_URL": None,
                "COPPICE_NBD": None,
                "COPPICE_CONNECT": "test:///default",
                "COLUMNS": "200",
            },
        )
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        out.append((c, r.exit_code, r.stdout, r.stderr))
    return out


def test_provisioner_same_output_with_and_without_daemon(pool_path, tmp_path):
    import libvirt

    from coppice.filer import Filer

    image = small_image(str(tmp_path / "golden.raw"))
    keyfile = tmp_path / "id.pub"
    keyfile.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBv0 test@coppice\n")
    cmds = script(image, str(keyfile))
    direct_pool = str(tmp_path / "direct")
    Filer.create(direct_pool).close()

    served = Served(pool_path, extra_args=("--connect", "test:///default"))
    try:
        live = _run_all(pool_path, cmds)
        assert served.proc.poll() is None  # the daemon owned the pool all along
        # the batch was a daemon job, and its VMs' disks point at the daemon's own NBD listener
        jobs = served.http.get("/jobs", params={"kind": "provision"}).json()
        assert [j["state"] for j in jobs] == ["done", "done"], jobs
    finally:
        assert served.stop() == 0
    # test:///default keeps its domains only while a connection is open in the process: hold one,
    # as the daemon does, so the direct run sees its VMs between commands too
    keep = libvirt.open("test:///default")
    try:
        direct = _run_all(direct_pool, cmds)
    finally:
        keep.close()

    for (cmd, rc_a, out_a, err_a), (_, rc_b, out_b, err_b) in zip(live, direct, strict=False):
        assert (rc_a, _norm(out_a, pool_path, str(tmp_path)), _norm(err_a, pool_path, str(tmp_path))) == (
            rc_b,
            _norm(out_b, direct_pool, str(tmp_path)),
            _norm(err_b, direct_pool, str(tmp_path)),
        ), cmd
    by_cmd = {tuple(c): (rc, out, err) for c, rc, out, err in live}
    assert by_cmd[tuple(cmds[12])][0] == 0 and "2 of 2 VMs provisioned" in by_cmd[tuple(cmds[12])][1]
    assert by_cmd[tuple(cmds[13])][0] != 0 and by_cmd[tuple(cmds[5])][0] != 0
    target = json.loads(by_cmd[("vm", "show", "--json", "pdweb1")][1])["target"]
    assert (target["host"], target["port"]) == (served.nbd_host, served.nbd_port), target
    direct_target = json.loads(next(o for c, _, o, _ in direct if c == ["vm", "show", "--json", "pdweb1"]))[
        "target"
    ]
    assert direct_target["port"] == 10809
