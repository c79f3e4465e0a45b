"""`coppice compare`: the measured ordering of the five strategies holds on
a small template, the numbers add up, the model stays within 20% of the
measurement on space, the plot is drawn, and the scratch pools go away
whatever happens."""

import json
import os
import subprocess
import sys

import pytest

from coppice.provision import compare as C

MiB = 1 << 20


@pytest.fixture(scope="module")
def template():
    data = bytearray(8 * MiB)
    data[: 4 * MiB] = os.urandom(4 * MiB)  # half data, half never written
    return C.Template({"disk0": bytes(data)})


@pytest.fixture(scope="module")
def measured(template, tmp_path_factory):
    plan = C.Plan(count=4, churn=0.05, days=2, reprovision_every_h=24, dedup_every_h=24)
    return C.measure(template, plan, str(tmp_path_factory.mktemp("scratch")))


def test_ordering(measured, template):
    s = measured["strategies"]
    w = template.written_bytes()
    assert w == 4 * MiB
    # Clones deploy faster and peak lower than full copies.
    assert s["clone"]["deploy_seconds"] < s["full"]["deploy_seconds"]
    assert s["clone"]["peak_bytes"] < s["full"]["peak_bytes"]
    # Post-process dedup peaks at N copies (+ the template) and ends near one.
    assert s["full+sis"]["peak_bytes"] >= 5 * w
    assert s["full+sis"]["after_dedup_bytes"] < 1.3 * w
    # Inline never exceeds about one copy + metadata, at any moment of the deployment.
    deploy_points = [b for h, b, e in s["full+inline"]["timeline"] if e.startswith("deploy")]
    assert max(deploy_points) < 1.3 * w
    # Full copies without dedup stay at N+1 copies.
    assert s["full"]["after_dedup_bytes"] >= 5 * w


def test_numbers_add_up(measured):
    for name, r in measured["strategies"].items():
        tl = r["timeline"]
        deploy = [b for h, b, e in tl if e.startswith("deploy")]
        assert len(deploy) == 4, name
        assert r["peak_bytes"] == max(deploy + [tl[0][1]]), name
        assert r["after_deploy_bytes"] <= r["peak_bytes"]
        assert r["after_dedup_bytes"] <= r["after_deploy_bytes"] + MiB // 4
        assert r["final_bytes"] == tl[-1][1]
        hours = [h for h, _, _ in tl]
        assert hours == sorted(hours)
        assert r["reprovision_peak_bytes"] == max(b for h, b, e in tl if e.startswith("reprovision"))


def test_model_within_20_percent(template, tmp_path):
    plan = C.Plan(count=3, churn=0.05, days=1, dedup_every_h=24)
    costs = C.calibrate(template, str(tmp_path))
    predicted = C.model(template, plan, costs)
    measured = C.measure(template, plan, str(tmp_path))
    err = C.model_error(predicted, measured, keys=("peak_bytes", "after_dedup_bytes", "after_churn_bytes"))
    worst = max(v for e in err.values() for v in e.values())
    assert worst <= 0.20, err


def test_figure_has_a_panel_per_strategy_and_the_saving(measured):
    fig = C.figure(measured)
    deploy, bars, *panels = fig.axes
    # The deploy panel: one line per strategy against real seconds, a point per VM.
    assert "seconds" in deploy.get_xlabel()
    labels = [ln.get_label().split(" ")[0] for ln in deploy.get_lines()]
    assert labels == list(C.STRATEGIES)
    for ln in deploy.get_lines():
        assert len(ln.get_xdata()) == measured["count"] + 1
        assert list(ln.get_xdata()) == sorted(ln.get_xdata())
    # One panel per strategy over simulated days; dedup runs marked only where they happen.
    assert [ax.get_title() for ax in panels] == list(C.STRATEGIES)
    for ax, s in zip(panels, C.STRATEGIES, strict=True):
        marks = [ln for ln in ax.get_lines() if ln.get_label() == "dedup run"]
        assert bool(marks) == s.endswith("+sis"), s
    # The saving is written out, with the measured figures.
    title = fig._suptitle.get_text()
    c = measured["strategies"]["clone"]["after_deploy_bytes"] / MiB
    f = measured["strategies"]["full"]["after_deploy_bytes"] / MiB
    assert f"clones {c:,.0f} MiB vs full copies {f:,.0f} MiB" in title
    assert len(bars.patches) == 2 * len(C.STRATEGIES)


def test_plot_is_a_png(measured, tmp_path):
    out = C.plot(measured, str(tmp_path / "space.png"))
    with open(out, "rb") as f:
        head = f.read(8)
    assert head == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(out) > 10_000


@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt()])
def test_scratch_removed_on_failure_and_ctrl_c(template, tmp_path, monkeypatch, exc):
    calls = {"n": 0}
    real = C._Run.deploy_one

    def failing(self, name):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(self, name)

    monkeypatch.setattr(C._Run, "deploy_one", failing)
    with pytest.raises(type(exc)):
        C.measure(template, C.Plan(count=3, days=0), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_too_small_refused_up_front(template, tmp_path, monkeypatch):
    # Stand-in for a full file system: statvfs reports 10 MiB free.
    real = os.statvfs

    class Small:
        def __init__(self, st):
            self.f_frsize = 4096
            self.f_bavail = (10 * MiB) // 4096

    monkeypatch.setattr(C.os, "statvfs", lambda p: Small(real(p)))
    with pytest.raises(C.CompareTooBig) as ei:
        C.measure(template, C.Plan(count=50, days=0), str(tmp_path))
    assert "MiB" in str(ei.value) and "only 10 MiB are free" in str(ei.value)
    assert os.listdir(tmp_path) == []


def test_cli_json_and_bad_input(tmp_path):
    img = tmp_path / "t.raw"
    with open(img, "wb") as f:
        f.write(os.urandom(MiB))
        f.truncate(2 * MiB)
    cmd = [
        sys.executable,
        "-m",
        "coppice.cli.main",
        "compare",
        "--image",
        str(img),
        "--count",
        "2",
        "--days",
        "1",
        "--scratch",
        str(tmp_path / "s"),
    ]
    p = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert set(out["strategies"]) == set(C.STRATEGIES)
    assert out["template_written_bytes"] == MiB
    p = subprocess.run(cmd[:-4] + ["--count", "0"], capture_output=True, text=True)
    assert p.returncode != 0 and "--count 0 is invalid" in p.stderr
    p = subprocess.run(cmd + ["--churn", "lots"], capture_output=True, text=True)
    assert p.returncode != 0 and "--churn 'lots' is invalid" in p.stderr


def test_cli_template_by_its_name(tmp_path):
    """`--template tiny` names the template as `template import` made it
    (its volume tpl_tiny works too), as the README shows."""
    pool = str(tmp_path / "pool")
    img = tmp_path / "t.raw"
    with open(img, "wb") as f:
        f.write(os.urandom(MiB))
        f.truncate(2 * MiB)
    cli = [sys.executable, "-m", "coppice.cli.main", "--pool", pool]
    for args in (["pool", "create", pool], ["template", "import", "tiny", "--image", str(img)]):
        p = subprocess.run(cli + args, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    runs = {}
    for name in ("tiny", "tpl_tiny"):
        p = subprocess.run(
            cli + ["compare", "--template", name, "--count", "2", "--days", "0", "--json"],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
        runs[name] = json.loads(p.stdout)
        assert runs[name]["template_written_bytes"] == MiB
    p = subprocess.run(
        cli + ["compare", "--template", "nosuch", "--count", "2"], capture_output=True, text=True
    )
    assert p.returncode != 0 and "nosuch" in p.stderr
