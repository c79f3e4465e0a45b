"""`coppice compare`: clones or dedup, measured on the user's own template.

Thin: parses, calls ``coppice.provision.compare``, prints a Rich table,
``--json``, and with ``--plot`` a PNG.
"""

from __future__ import annotations

import re

import typer

from ..errors import InvalidArgument
from .common import JSON_OPT, command, console, emit_json, pool_path, session


def _percent(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text or "")
    if not m:
        raise InvalidArgument(detail=f"--churn {text!r} is invalid: give a percentage like 5%")
    return float(m.group(1)) / 100


def _hours(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([hd]?)\s*", text)
    if not m or int(m.group(1)) == 0:
        raise InvalidArgument(detail=f"{what} {text!r} is invalid: give a period like 12h or 1d")
    return int(m.group(1)) * (24 if m.group(2) == "d" else 1)


def _days(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*d?\s*", text)
    if not m:
        raise InvalidArgument(detail=f"--days {text!r} is invalid: give a number of days like 7")
    return int(m.group(1))


def _mib(b) -> str:
    return "-" if b is None else f"{b / (1 << 20):,.1f} MiB"


def _secs(s) -> str:
    return "-" if s is None else f"{s:.3f} s"


def _template_volume(provisioning, name: str) -> str:
    """A template's name (`coppice template list`) or, as before, its volume."""
    from ..errors import NotFound

    try:
        return provisioning.template_show(name)["volume"]
    except NotFound:
        return name


@command
def compare(
    template: str | None = typer.Option(
        None,
        "--template",
        "-t",
        help="Template in the pool, by its name (`template list`) or its volume; the base snapshot is deployed.",
    ),
    image: str | None = typer.Option(None, "--image", help="Or a disk image file (any qemu-img format)."),
    snapshot: str = typer.Option("base", "--snapshot", help="Template snapshot to deploy."),
    count: int = typer.Option(..., "--count", "-n", help="VMs to deploy per strategy."),
    churn: str = typer.Option(
        "5%", "--churn", help="Random rewrites per VM per day, % of the template's data."
    ),
    reprovision_every: str | None = typer.Option(None, "--reprovision-every", help="e.g. 1d or 12h."),
    days: str = typer.Option("1", "--days", help="Simulated days."),
    dedup_schedule: str = typer.Option(
        "1d", "--dedup-schedule", help="Post-process dedup period, e.g. 1d, 6h."
    ),
    measure_: bool = typer.Option(False, "--measure", help="Run every strategy for real (default)."),
    model_: bool = typer.Option(
        False,
        "--model",
        help="Predict from measured per-operation costs, and report "
        "the prediction error against --measure at a small N.",
    ),
    scratch: str | None = typer.Option(
        None, "--scratch", help="Scratch directory (default: beside the pool)."
    ),
    plot_: str | None = typer.Option(None, "--plot", help="Write a PNG of space over time here."),
    as_json: bool = JSON_OPT,
):
    """Measure clones against full copies + dedup on your own template."""
    from rich.table import Table

    from ..provision import compare as C

    if (template is None) == (image is None):
        raise InvalidArgument(detail="give exactly one of --template NAME or --image FILE")
    if measure_ and model_:
        raise InvalidArgument(detail="give --measure or --model, not both")
    plan = C.Plan(
        count=count,
        churn=_percent(churn),
        days=_days(days),
        reprovision_every_h=_hours(reprovision_every, "--reprovision-every"),
        dedup_every_h=_hours(dedup_schedule, "--dedup-schedule"),
    )
    plan.validate()
    import os

    if image is not None:
        tmpl = C.Template.from_image(image)
        where = scratch or os.path.dirname(os.path.abspath(image))
    else:
        from ..errors import NotSupported

        pool = pool_path()
        where = scratch or os.path.dirname(os.path.abspath(pool))
        with session() as s:
            vol = _template_volume(s.layer("provision"), template)
            try:
                tmpl = C.Template.from_filer(s.filer, vol, snapshot)
            except NotSupported:
                # The pool's LUNs cannot be opened in this process (`coppice serve` owns
                # them): read the snapshot's LUNs over the pool's NBD socket instead.
                names = [lun["path"].rsplit("/", 1)[1] for lun in s.filer.lun_show(volume=vol)]
                exports = {n: f"/vol/{vol}/.snapshot/{snapshot}/{n}" for n in names}
                tmpl = C.Template.from_nbd(os.path.join(pool, "nbd.sock"), exports)
    out = console()
    if model_:
        costs = C.calibrate(tmpl, where)
        result = C.model(tmpl, plan, costs)
        small = C.Plan(
            count=min(3, plan.count),
            churn=plan.churn,
            days=min(1, plan.days),
            dedup_every_h=plan.dedup_every_h,
        )
        check = C.measure(tmpl, small, where)
        result["check"] = {"count": small.count, "error": C.model_error(C.model(tmpl, small, costs), check)}
    else:
        with out.status("measuring strategies ...") as st:
            result = C.measure(tmpl, plan, where, progress=lambda s: st.update(f"measuring {s} ..."))
    if plot_:
        if result["mode"] != "measure":
            raise InvalidArgument(detail="--plot draws measured timelines: use it with --measure")
        C.plot(result, plot_)
    if as_json:
        emit_json(result)
        return
    t = Table(
        title=f"{result['mode']}: {result['count']} VMs, template "
        f"{result['template_written_bytes'] / (1 << 20):.1f} MiB written"
    )
    for col in ("strategy", "deploy", "peak", "after dedup", "after churn", "reprovision", "reprov. peak"):
        t.add_column(col, justify="right" if col != "strategy" else "left")
    for s, r in result["strategies"].items():
        t.add_row(
            s,
            _secs(r["deploy_seconds"]),
            _mib(r["peak_bytes"]),
            _mib(r["after_dedup_bytes"]),
            _mib(r["after_churn_bytes"]),
            _secs(r.get("reprovision_seconds")),
            _mib(r.get("reprovision_peak_bytes")),
        )
    out.print(t)
    if "check" in result:
        worst = max(
            v for e in result["check"]["error"].values() for k, v in e.items() if k != "deploy_seconds"
        )
        out.print(f"model vs measured at N={result['check']['count']}: worst space error {worst:.0%}")
    if plot_:
        out.print(f"plot: {plot_}")
