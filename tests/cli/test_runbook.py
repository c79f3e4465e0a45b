"""The classic 7-mode FlexClone runbook, line by line, through the real CLI."""

import subprocess
import sys


def test_flexclone_runbook(cli):
    out = cli("vol", "create", "fvol_master", "20g").output
    assert out == "Volume fvol_master created: 20g, thin, snap reserve 5%.\n"
    out = cli("lun", "create", "-s", "10g", "-t", "linux", "/vol/fvol_master/lun0").output
    assert out.startswith("LUN /vol/fvol_master/lun0 created: 10g, ostype linux, serial ")
    out = cli("igroup", "create", "-i", "-t", "linux", "esx1", "iqn.2026-01.org.example:host1").output
    first, hint = out.split("\n", 1)
    assert first == "Initiator group esx1 created (iscsi, linux, 1 initiator(s))."
    # A names-only igroup on an NBD target says how NBD clients are identified.
    assert hint.startswith("note: igroup esx1 holds names only.") and "igroup add esx1 127.0.0.1" in hint
    assert (
        cli("lun", "map", "/vol/fvol_master/lun0", "esx1", "0").output
        == "LUN /vol/fvol_master/lun0 was mapped to initiator group esx1=0.\n"
    )
    assert (
        cli("snap", "create", "fvol_master", "clone_base_snapshot").output
        == "Snapshot clone_base_snapshot of volume fvol_master created.\n"
    )

    out = cli("vol", "clone", "create", "fvol_clone1", "-b", "fvol_master", "clone_base_snapshot").output
    assert out == (
        "Creation of clone volume 'fvol_clone1' has completed (parent fvol_master, snapshot "
        "clone_base_snapshot).\nWarning: LUN /vol/fvol_clone1/lun0 is offline: LUN ID 0 in igroup esx1 "
        "is held by /vol/fvol_master/lun0\n"
    )

    # lun show: the clone LUN is offline, with the collision named
    lines = cli("lun", "show").output.splitlines()
    assert lines[0].split() == [
        "/vol/fvol_clone1/lun0",
        "10g",
        "(10737418240)",
        "(r/w,",
        "offline,",
        "mapped)",
    ]
    assert lines[1].split() == [
        "/vol/fvol_master/lun0",
        "10g",
        "(10737418240)",
        "(r/w,",
        "online,",
        "mapped)",
    ]
    assert (
        lines[2]
        == "LUN /vol/fvol_clone1/lun0 is offline: LUN ID 0 in igroup esx1 is held by /vol/fvol_master/lun0"
    )
    rows = [ln.split() for ln in cli("lun", "show", "-m").output.splitlines()[1:3]]
    assert rows == [
        ["/vol/fvol_clone1/lun0", "esx1", "0", "offline"],
        ["/vol/fvol_master/lun0", "esx1", "0", "online"],
    ]
    luns = {x["path"]: x for x in cli.json("lun", "show")}
    assert luns["/vol/fvol_clone1/lun0"]["serial"] != luns["/vol/fvol_master/lun0"]["serial"]

    # bringing it online as is is refused, naming the collision
    r = cli("lun", "online", "/vol/fvol_clone1/lun0", code=5)
    assert "LUN ID 0 in igroup esx1 is held by /vol/fvol_master/lun0" in r.stderr
    # remapping with a used ID is refused naming the LUN holding it
    assert (
        cli("lun", "unmap", "/vol/fvol_clone1/lun0", "esx1").output
        == "LUN /vol/fvol_clone1/lun0 unmapped from initiator group esx1.\n"
    )
    r = cli("lun", "map", "/vol/fvol_clone1/lun0", "esx1", "0", code=5)
    assert r.stderr == (
        "Error: LUN ID 0 is already in use in igroup esx1 by LUN /vol/fvol_master/lun0; choose "
        "another ID or omit it to take the lowest free one.\n"
    )
    assert (
        cli("lun", "map", "/vol/fvol_clone1/lun0", "esx1", "3").output
        == "LUN /vol/fvol_clone1/lun0 was mapped to initiator group esx1=3.\n"
    )
    assert cli("lun", "online", "/vol/fvol_clone1/lun0").output == "LUN /vol/fvol_clone1/lun0 is online.\n"
    assert cli.json("lun", "show", "/vol/fvol_clone1/lun0")[0]["maps"] == [{"igroup": "esx1", "lun_id": 3}]

    assert cli("snap", "sched", "fvol_clone1", "0").output == "Volume fvol_clone1: 0 0 0\n"
    assert cli.json("snap", "sched", "fvol_clone1")["text"] == "0 0 0"

    r = cli("snap", "delete", "fvol_master", "clone_base_snapshot", code=5)
    assert r.stderr.startswith("Error: snapshot is busy: clone fvol_clone1 depends on it")
    assert "(busy,vclone: fvol_clone1)" in cli("snap", "list", "fvol_master").output

    assert cli.json("vol", "clone", "show")[0]["parent_snapshot"] == "clone_base_snapshot"
    assert (
        "to split clone volume 'fvol_clone1'"
        in cli("vol", "clone", "split", "estimate", "fvol_clone1").output
    )
    out = cli("vol", "clone", "split", "start", "fvol_clone1").output
    assert out.endswith("Clone volume 'fvol_clone1' has been split from its parent volume.\n")
    st = cli.json("vol", "clone", "split", "status", "fvol_clone1")
    assert (st["state"], st["clone"]) == ("done", False)

    assert (
        cli("snap", "delete", "fvol_master", "clone_base_snapshot").output
        == "Snapshot clone_base_snapshot of volume fvol_master deleted.\n"
    )
    assert cli.json("vol", "show", "fvol_clone1")[0]["parent"] is None
    assert cli("fsck").output.startswith("fsck: clean")


def test_remap_and_df(cli):
    cli("vol", "create", "fvol_master", "1g")
    cli("lun", "create", "-s", "64m", "/vol/fvol_master/lun0")
    cli("igroup", "create", "esx1", "h1")
    cli("lun", "map", "/vol/fvol_master/lun0", "esx1")
    cli("snap", "create", "fvol_master", "s")
    out = cli("vol", "clone", "create", "c1", "-b", "fvol_master", "s", "--remap").output
    assert "LUN /vol/c1/lun0 online, mapped esx1:1." in out
    d = cli.json("df")
    assert [r["volume"] for r in d["volumes"]] == ["c1", "fvol_master"]
    assert d["volumes"][1]["snap_reserve"] == (1 << 30) // 20
    out = cli("df", "-h").output
    assert "/vol/fvol_master/.snapshot" in out
    out = cli("df", "-s").output
    assert "saved" in out and "%saved" in out
    assert "esx1" in cli("igroup", "show").output


def test_schedule_tick_with_a_fake_clock(cli):
    cli("vol", "create", "v", "1g")
    cli("snap", "sched", "v", "0", "2", "6@8,12,16,20")
    assert cli.json("snap", "sched", "v")["hour_list"] == [8, 12, 16, 20]
    assert (
        cli("snap", "sched", "v", "--run-now", "--now", "2024-03-04T08:05").output
        == "Volume v: created hourly.0.\n"
    )
    assert (
        cli("snap", "sched-tick", "--now", "2024-03-04T12:00").output
        == "Volume v: created hourly.0; renamed hourly.0->hourly.1.\n"
    )
    assert [s["name"] for s in cli.json("snap", "list", "v")] == ["hourly.0", "hourly.1"]
    r = cli("snap", "sched-tick", "--now", "yesterday", code=4)
    assert "not an ISO date-time" in r.stderr


def test_entry_point_runs_as_a_program(pool_dir):
    # the real program, as a user runs it (module form of coppice.cli.main:main)
    env = {"COPPICE_POOL": pool_dir, "PATH": "/usr/bin:/bin"}

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "coppice.cli.main", *a],
            env=env,  # noqa: E731
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = run("vol", "show")
    assert r.returncode == 2 and "coppice pool create" in r.stderr
    assert run("pool", "create").returncode == 0
    assert run("vol", "create", "v", "1g").returncode == 0
    r = run("vol", "show", "--json")
    assert r.returncode == 0 and '"name": "v"' in r.stdout
