"""Clones or dedup? Measure both strategies on the user's own template.

Contract: ``measure`` deploys N copies of a template under each strategy,
for real, each in its own scratch pool (a subdirectory of ``scratch``, which
is removed afterwards even on failure or Ctrl-C), through the Filer and the
dedup layer — the same code paths as ``vm provision`` (``clone_create`` of
the template's base snapshot) and ``sis`` (``dedup.scan``, the inline hook).
``model`` predicts the same figures from the template's size and a few
measured per-operation costs without writing N copies, and ``compare``
runs ``model`` beside ``measure`` at a small N to report its error.

Strategies:
  full          full copies (what `qemu-img convert` per VM gives), no dedup
  full+sis      full copies, post-process dedup on the chosen schedule
  full+inline   full copies written with inline dedup on
  clone         FlexClone-style clones of one snapshot
  clone+sis     clones, and post-process dedup on the schedule

Timeline (simulated; real operations, compressed time): at hour 0 every
strategy deploys N VMs; every ``dedup_every_h`` hours the ``+sis``
strategies scan; every 24 h each VM rewrites ``churn`` of the template's
written size with random data; every ``reprovision_every_h`` the VMs are
thrown away and deployed again (a refresh). Physical space is sampled after
every event: pool data blocks in use plus pool metadata.

Figures are JSON-able dicts; all sizes in bytes, times in seconds.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from ..errors import InvalidArgument, NoSpace

STRATEGIES = ("full", "full+sis", "full+inline", "clone", "clone+sis")
COPY_CHUNK = 4 << 20


class CompareTooBig(NoSpace):
    """The measurement needs about {need_mib} MiB in {where} but only
    {free_mib} MiB are free; use a smaller --count, --model, or point
    --scratch at a larger file system."""


@dataclass
class Template:
    """What is deployed: LUN images by name (bytes-like, the whole LUN)."""

    luns: dict[str, bytes]

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.luns.values())

    def written_bytes(self, bs: int = 4096) -> int:
        """Bytes that occupy blocks: all-zero blocks are never stored."""
        zero = bytes(bs)
        n = 0
        for data in self.luns.values():
            mv = memoryview(data)
            for off in range(0, len(data), bs):
                if mv[off : off + bs] != zero[: len(mv[off : off + bs])]:
                    n += bs
        return n

    @classmethod
    def from_image(cls, path: str) -> Template:
        """Any qemu-img format, converted to raw."""
        import subprocess

        if not os.path.exists(path):
            raise InvalidArgument(detail=f"image {path} does not exist; give a disk image file")
        with tempfile.TemporaryDirectory(prefix="coppice-compare-img-") as d:
            raw = os.path.join(d, "disk.raw")
            p = subprocess.run(
                ["qemu-img", "convert", "-O", "raw", path, raw], capture_output=True, text=True
            )
            if p.returncode:
                raise InvalidArgument(detail=f"cannot read image {path}: {p.stderr.strip()}")
            with open(raw, "rb") as f:
                return cls({"disk0": f.read()})

    @classmethod
    def from_filer(cls, filer, volume: str, snapshot: str) -> Template:
        """The LUNs of a template's base snapshot in the user's pool."""
        luns = {}
        for lun in filer.lun_show(volume=volume):
            name = lun["path"].rsplit("/", 1)[1]
            dev = filer.open_lun(f"/vol/{volume}/.snapshot/{snapshot}/{name}", allow_offline=True)
            try:
                luns[name] = bytes(dev.pread(0, dev.size))
            finally:
                dev.close()
        if not luns:
            raise InvalidArgument(detail=f"template volume {volume} has no LUN to deploy")
        return cls(luns)

    @classmethod
    def from_nbd(cls, socket_path: str, exports: dict[str, str]) -> Template:
        """The LUNs read over the NBD Unix socket of the `coppice serve`
        that owns the pool (``exports``: LUN name -> export name)."""
        import nbd

        luns = {}
        for name, export in exports.items():
            h = nbd.NBD()  # closed when dropped, error or not
            h.set_export_name(export)
            h.connect_unix(socket_path)
            size = h.get_size()
            buf = bytearray(size)
            for off in range(0, size, COPY_CHUNK):
                n = min(COPY_CHUNK, size - off)
                buf[off : off + n] = h.pread(n, off)
            h.shutdown()
            luns[name] = bytes(buf)
        if not luns:
            raise InvalidArgument(detail="the template has no LUN to deploy")
        return cls(luns)


@dataclass
class Plan:
    count: int
    churn: float = 0.05  # fraction of the template's written bytes, per VM per day
    days: int = 1
    reprovision_every_h: int | None = None
    dedup_every_h: int = 24  # +sis strategies scan on this period (and right after deploy)
    seed: int = 1

    def validate(self) -> None:
        if not isinstance(self.count, int) or self.count < 1 or self.count > 10000:
            raise InvalidArgument(detail=f"--count {self.count} is invalid: give 1 to 10000 VMs")
        if not 0 <= self.churn <= 1:
            raise InvalidArgument(detail=f"--churn {self.churn:.0%} is invalid: give 0% to 100%")
        if self.days < 0 or self.days > 365:
            raise InvalidArgument(detail=f"--days {self.days} is invalid: give 0 to 365")
        if self.reprovision_every_h is not None and self.reprovision_every_h < 1:
            raise InvalidArgument(detail="--reprovision-every must be at least 1h")
        if self.dedup_every_h < 1:
            raise InvalidArgument(detail="--dedup-schedule period must be at least 1h")


@dataclass
class Result:
    strategy: str
    deploy_seconds: float = 0.0
    peak_bytes: int = 0  # highest physical space during the first deployment
    after_deploy_bytes: int = 0
    after_dedup_bytes: int = 0  # after the first dedup run (= after_deploy without one)
    after_churn_bytes: int = 0  # after the first day's churn (and its dedup run)
    final_bytes: int = 0
    reprovision_seconds: float | None = None  # mean per cycle
    reprovision_peak_bytes: int | None = None
    timeline: list = field(default_factory=list)  # [hour, bytes, event]
    # The first deployment against real time: [seconds since it began, bytes].
    deploy_trace: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------
class _Run:
    """One strategy in its own scratch pool."""

    def __init__(self, strategy: str, template: Template, plan: Plan, path: str):
        from ..dedup.facade import Dedup
        from ..filer import Filer

        self.s = strategy
        self.t = template
        self.plan = plan
        self.filer = Filer.create(path)
        self.dedup = Dedup(self.filer)
        self.rnd = random.Random(plan.seed)
        self.vms: list[str] = []
        self.res = Result(strategy)
        self.hour = 0.0
        if strategy == "full+inline":
            self.dedup.attach_inline()
        self._gen = 0

    def physical(self) -> int:
        ps = self.filer.pool_info()
        return ps["used_bytes"] + ps["metadata_bytes"]

    def sample(self, event: str) -> int:
        b = self.physical()
        self.res.timeline.append([round(self.hour, 3), b, event])
        return b

    # -- the template as the user's pool holds it: a volume + base snapshot
    def import_template(self) -> None:
        f = self.filer
        size = max(self.t.size * 2, 64 << 20)
        f.vol_create("tmpl", size)
        if self.s.endswith("+sis") or self.s == "full+inline":
            # Before the data goes in, so inline dedup knows the template's blocks.
            self._sis_on("tmpl")
        for name, data in self.t.luns.items():
            f.lun_create(f"/vol/tmpl/{name}", max(len(data), 4096))
            self._copy_into(f"/vol/tmpl/{name}", data)
        f.snap_create("tmpl", "base")
        self.sample("template")

    def _sis_on(self, vol: str) -> None:
        self.dedup.sis_configure(vol, enabled=True, inline=True if self.s == "full+inline" else None)

    def _copy_into(self, path: str, data: bytes) -> None:
        dev = self.filer.open_lun(path, allow_offline=True)
        try:
            mv = memoryview(data)
            for off in range(0, len(data), COPY_CHUNK):
                dev.pwrite(off, mv[off : off + COPY_CHUNK])
            dev.flush()
        finally:
            dev.close()

    # -- deploy one VM's storage by the strategy's path
    def deploy_one(self, name: str) -> None:
        f = self.filer
        if self.s.startswith("clone"):
            f.clone_create(name, "tmpl", "base")
        else:
            f.vol_create(name, max(self.t.size * 2, 64 << 20))
            if self.s.endswith("+sis") or self.s == "full+inline":
                self._sis_on(name)
            for lun, data in self.t.luns.items():
                f.lun_create(f"/vol/{name}/{lun}", max(len(data), 4096))
                self._copy_into(f"/vol/{name}/{lun}", data)

    def deploy_all(self, event: str) -> tuple[float, int]:
        self._gen += 1
        t0 = time.perf_counter()
        peak = self.physical()
        trace = self.res.deploy_trace if not self.res.deploy_trace else None
        if trace is not None:
            trace.append([0.0, peak])
        self.vms = []
        for i in range(self.plan.count):
            name = f"vm{self._gen}_{i:04d}"
            self.deploy_one(name)
            self.vms.append(name)
            b = self.sample(f"{event} {name}")
            if trace is not None:
                # Sampling is outside the measured step: deploy time excludes it.
                trace.append([round(time.perf_counter() - t0, 6), b])
            peak = max(peak, b)
        return time.perf_counter() - t0, peak

    def destroy_all(self) -> None:
        for name in self.vms:
            self.filer.vol_destroy(name, force=True)
        self.vms = []
        self.sample("destroy")

    def dedup_run(self) -> None:
        if not self.s.endswith("+sis"):
            return
        self.dedup.sis_scan()
        self.sample("dedup run")

    def churn(self) -> None:
        """Each VM rewrites ``churn`` x the template's written bytes, in
        random 4 KiB blocks of random data anywhere on its LUNs."""
        bs = 4096
        k = churn_blocks(self.t, self.plan.churn)
        if not k:
            return
        for name in self.vms:
            for lun, data in self.t.luns.items():
                nblocks = max(1, len(data) // bs)
                dev = self.filer.open_lun(f"/vol/{name}/{lun}", allow_offline=True)
                try:
                    for _ in range(k):
                        dev.pwrite(self.rnd.randrange(nblocks) * bs, self.rnd.randbytes(bs))
                finally:
                    dev.close()
        self.sample("churn")

    def run(self) -> Result:
        plan, res = self.plan, self.res
        self.import_template()
        res.deploy_seconds, res.peak_bytes = self.deploy_all("deploy")
        res.after_deploy_bytes = self.physical()
        self.dedup_run()  # post-process dedup runs once the copies are in
        res.after_dedup_bytes = self.physical()
        res.after_churn_bytes = res.after_dedup_bytes
        cycles = []
        hours = plan.days * 24
        events = sorted(
            set(range(24, hours + 1, 24))
            | set(range(plan.dedup_every_h, hours + 1, plan.dedup_every_h))
            | (
                set(range(plan.reprovision_every_h, hours + 1, plan.reprovision_every_h))
                if plan.reprovision_every_h
                else set()
            )
        )
        first_churn_done = False
        for h in events:
            self.hour = float(h)
            if h % 24 == 0:
                self.churn()
            if h % plan.dedup_every_h == 0:
                self.dedup_run()
            if h % 24 == 0 and not first_churn_done:
                res.after_churn_bytes = self.physical()
                first_churn_done = True
            if plan.reprovision_every_h and h % plan.reprovision_every_h == 0:
                t0 = time.perf_counter()
                self.destroy_all()
                _, peak = self.deploy_all("reprovision")
                self.dedup_run()
                cycles.append((time.perf_counter() - t0, peak))
        if cycles:
            res.reprovision_seconds = sum(c[0] for c in cycles) / len(cycles)
            res.reprovision_peak_bytes = max(c[1] for c in cycles)
        res.final_bytes = self.physical()
        fsck = self.filer.fsck()
        if not fsck["clean"]:
            raise RuntimeError(f"fsck after strategy {self.s} is not clean: {fsck['problems'][:3]}")
        return res

    def close(self) -> None:
        self.filer.close()


def churn_blocks(template: Template, churn: float, bs: int = 4096) -> int:
    """Blocks each VM rewrites per LUN per day."""
    w = template.written_bytes(bs)
    return int(round(w * churn / bs / max(1, len(template.luns))))


def _check_room(template: Template, plan: Plan, scratch: str) -> None:
    per_copy = template.written_bytes() + (1 << 20)
    # The worst strategy holds the template, N copies and, while
    # reprovisioning, the churned blocks of the old generation.
    need = per_copy * (plan.count + 2) * 2 + (32 << 20)
    os.makedirs(scratch, exist_ok=True)
    st = os.statvfs(scratch)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise CompareTooBig(need_mib=need >> 20, where=scratch, free_mib=free >> 20)


def measure(
    template: Template, plan: Plan, scratch: str | None = None, strategies=STRATEGIES, progress=None
) -> dict:
    plan.validate()
    base = scratch or tempfile.gettempdir()
    _check_room(template, plan, base)
    work = tempfile.mkdtemp(prefix="coppice-compare-", dir=base)
    out = {}
    try:
        for s in strategies:
            if progress:
                progress(s)
            r = _Run(s, template, plan, os.path.join(work, s.replace("+", "_")))
            try:
                out[s] = r.run().as_dict()
            finally:
                r.close()
                shutil.rmtree(os.path.join(work, s.replace("+", "_")), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": "measure",
        "count": plan.count,
        "template_bytes": template.size,
        "template_written_bytes": template.written_bytes(),
        "strategies": out,
    }


# ---------------------------------------------------------------------------
# modelling
# ---------------------------------------------------------------------------
def calibrate(template: Template, scratch: str | None = None) -> dict:
    """Per-operation costs measured once on this machine: one full copy, one
    inline-dedup copy, one clone, one dedup scan of the copies, and the
    template's own footprint. Three VMs are deployed per strategy; the time
    is the mean of the last two (the first pays warm-up)."""
    base = scratch or tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="coppice-calibrate-", dir=base)
    try:
        plan = Plan(count=3, churn=0.0, days=0)
        costs = {}
        for s in ("full", "full+inline", "clone", "full+sis"):
            r = _Run(s, template, plan, os.path.join(work, s.replace("+", "_")))
            try:
                r.import_template()
                base_b = r.physical()
                t0 = time.perf_counter()
                r.deploy_one("c0")
                one = r.physical()
                t1 = time.perf_counter()
                r.deploy_one("c1")
                r.deploy_one("c2")
                t2 = time.perf_counter()
                three = r.physical()
                costs[s] = {
                    "seconds": (t2 - t1) / 2,
                    "first_bytes": one - base_b,
                    "next_bytes": (three - base_b) // 3,
                    "base_bytes": base_b,
                }
                if s == "full+sis":
                    t0 = time.perf_counter()
                    r.dedup_run()
                    costs[s]["scan_seconds"] = time.perf_counter() - t0
                    costs[s]["after_scan_bytes"] = r.physical()
            finally:
                r.close()
        return costs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def model(template: Template, plan: Plan, costs: dict) -> dict:
    """Predict every strategy's figures from the calibrated costs."""
    plan.validate()
    n = plan.count
    w = template.written_bytes()
    bs = 4096
    base = costs["full"]["base_bytes"]
    per_vm = {
        "full": costs["full"]["next_bytes"],
        "full+sis": costs["full+sis"]["next_bytes"],
        "full+inline": costs["full+inline"]["next_bytes"],
        "clone": costs["clone"]["next_bytes"],
        "clone+sis": costs["clone"]["next_bytes"],
    }
    secs = {
        "full": costs["full"]["seconds"],
        "full+sis": costs["full"]["seconds"],
        "full+inline": costs["full+inline"]["seconds"],
        "clone": costs["clone"]["seconds"],
        "clone+sis": costs["clone"]["seconds"],
    }
    # After a scan every full copy keeps only its own metadata.
    residual = max(0, (costs["full+sis"]["after_scan_bytes"] - costs["full+sis"]["base_bytes"]) // 3)
    # Churn: k random blocks per LUN, drawn with replacement.
    k = churn_blocks(template, plan.churn)
    distinct = 0.0
    hole_frac = 0.0
    for data in template.luns.values():
        nb = max(1, len(data) // bs)
        distinct += nb * (1 - (1 - 1 / nb) ** k)
        hole_frac = 1 - w / max(1, template.size)
    out = {}
    for s in STRATEGIES:
        peak = base + n * per_vm[s]
        after_dedup = base + n * residual if s == "full+sis" else peak
        # A churned block is new unique data, except that on a plain full
        # copy, rewriting a written block frees the block it replaces.
        add = distinct * (hole_frac if s == "full" else 1.0) * bs
        out[s] = {
            "strategy": s,
            "deploy_seconds": n * secs[s],
            "peak_bytes": peak,
            "after_deploy_bytes": peak,
            "after_dedup_bytes": after_dedup,
            "after_churn_bytes": int(after_dedup + n * add),
        }
    return {
        "mode": "model",
        "count": n,
        "template_bytes": template.size,
        "template_written_bytes": w,
        "strategies": out,
        "costs": costs,
    }


def model_error(
    predicted: dict,
    measured: dict,
    keys=("peak_bytes", "after_dedup_bytes", "after_churn_bytes", "deploy_seconds"),
) -> dict:
    """Relative error of each predicted figure against the measured one."""
    err = {}
    for s, m in measured["strategies"].items():
        p = predicted["strategies"][s]
        err[s] = {k: (abs(p[k] - m[k]) / m[k] if m[k] else 0.0) for k in keys}
    return err


# ---------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------
STYLE = {  # colour, line style, marker: distinct even where two lines coincide
    "full": ("#d62728", "-", "s"),
    "full+sis": ("#ff7f0e", "--", "D"),
    "full+inline": ("#9467bd", "-.", "^"),
    "clone": ("#2ca02c", "-", "o"),
    "clone+sis": ("#1f77b4", ":", "v"),
}


def _mib(b: float) -> float:
    return b / (1 << 20)


def figure(result: dict):
    """The comparison as a matplotlib Figure (``plot`` saves it).

    Top left: the first deployment, physical space against real seconds,
    one line per strategy (markers at each VM, so a line under another
    still shows). Top right: space after deployment and at the end, per
    strategy, labelled in MiB. Bottom: one panel per strategy over the
    simulated days, dedup runs and reprovisions marked, so no strategy's
    line hides another's.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = [s for s in STRATEGIES if s in result["strategies"]]
    fig = plt.figure(figsize=(13, 8), dpi=100)
    grid = fig.add_gridspec(
        2, len(strategies), height_ratios=[1.15, 1], hspace=0.45, wspace=0.25, bottom=0.14
    )
    deploy = fig.add_subplot(grid[0, : len(strategies) // 2 + 1])
    bars = fig.add_subplot(grid[0, len(strategies) // 2 + 1 :])

    for s in strategies:
        r = result["strategies"][s]
        colour, ls, marker = STYLE[s]
        tr = r.get("deploy_trace") or []
        if tr:
            deploy.plot(
                [p[0] for p in tr],
                [_mib(p[1]) for p in tr],
                ls,
                color=colour,
                marker=marker,
                markersize=4,
                label=f"{s} ({r['deploy_seconds']:.2f} s)",
            )
    deploy.set_title(f"deploying {result['count']} VMs")
    deploy.set_xlabel("real time (seconds)")
    deploy.set_ylabel("physical space (MiB)")
    deploy.grid(alpha=0.3)
    deploy.legend(fontsize=8, loc="upper left")

    x = range(len(strategies))
    after = [_mib(result["strategies"][s]["after_deploy_bytes"]) for s in strategies]
    final = [_mib(result["strategies"][s]["final_bytes"]) for s in strategies]
    b1 = bars.bar([i - 0.2 for i in x], after, 0.4, label="after deploy", color="#bbbbbb")
    b2 = bars.bar(
        [i + 0.2 for i in x], final, 0.4, label="at the end", color=[STYLE[s][0] for s in strategies]
    )
    bars.bar_label(b1, fmt="%.0f", fontsize=7)
    bars.bar_label(b2, fmt="%.0f", fontsize=7)
    bars.set_xticks(list(x), strategies, fontsize=8, rotation=20)
    bars.set_ylabel("MiB")
    bars.set_title("physical space per strategy")
    bars.legend(fontsize=8)

    top = max(_mib(p[1]) for s in strategies for p in result["strategies"][s]["timeline"]) * 1.1
    for k, s in enumerate(strategies):
        ax = fig.add_subplot(grid[1, k], sharey=fig.axes[2] if k else None)
        r = result["strategies"][s]
        colour, ls, _ = STYLE[s]
        tl = r["timeline"]
        ax.step([p[0] / 24 for p in tl], [_mib(p[1]) for p in tl], where="post", color=colour, label=s)
        runs = [p for p in tl if p[2] == "dedup run"]
        if runs:
            ax.plot(
                [p[0] / 24 for p in runs],
                [_mib(p[1]) for p in runs],
                "v",
                color="black",
                markersize=6,
                label="dedup run",
            )
        reprov = [p for p in tl if p[2].startswith("reprovision vm") and p[2].endswith("0000")]
        if reprov:
            ax.plot(
                [p[0] / 24 for p in reprov],
                [_mib(p[1]) for p in reprov],
                "^",
                color="grey",
                markersize=6,
                label="reprovision",
            )
        ax.set_title(s, color=colour, fontsize=10)
        ax.set_ylim(0, top)
        ax.set_xlabel("simulated days")
        if k == 0:
            ax.set_ylabel("physical space (MiB)")
        ax.grid(alpha=0.3)
        ax.annotate(
            f"{_mib(r['final_bytes']):.0f} MiB",
            (tl[-1][0] / 24, _mib(tl[-1][1])),
            textcoords="offset points",
            xytext=(-30, 6),
            fontsize=8,
        )

    from matplotlib.lines import Line2D

    fig.legend(
        handles=[
            Line2D([], [], marker="v", color="black", ls="", label="dedup run"),
            Line2D([], [], marker="^", color="grey", ls="", label="reprovision (all VMs replaced)"),
        ],
        loc="lower center",
        ncol=2,
        fontsize=8,
    )
    saving = ""
    if "clone" in result["strategies"] and "full" in result["strategies"]:
        c = _mib(result["strategies"]["clone"]["after_deploy_bytes"])
        f = _mib(result["strategies"]["full"]["after_deploy_bytes"])
        saving = f": clones {c:,.0f} MiB vs full copies {f:,.0f} MiB"
    fig.suptitle(
        f"Coppice compare, {result['count']} VMs of a "
        f"{_mib(result['template_written_bytes']):.1f} MiB template{saving}",
        fontsize=12,
    )
    return fig


def plot(result: dict, path: str) -> str:
    """Write ``figure(result)`` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path)
    plt.close(fig)
    return path
