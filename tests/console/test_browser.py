"""The web console in a real browser: Debian's chromium driven by Selenium (chromium-driver),
headless, against a real `coppice serve` on loopback.

One daemon and one browser serve the whole module, in order: sign in (a wrong token refused
first), the runbook's state on the page, a clone made from the page, a refused action that
changes nothing, 5 VMs provisioned on test:///default from the form, the space plot.
Screenshots of each main view go to a temporary folder (printed; COPPICE_CONSOLE_SHOTS
chooses it), so docs/img can be refreshed from a run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from tests.api.conftest import Served, run_cli
from tests.provision.prov_helpers import small_image

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30


def _need_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
            "run `bash scripts/install.sh` or `apt-get install chromium chromium-driver`"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("browser tests need selenium: run `bash scripts/install.sh` (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def shots():
    d = os.environ.get("COPPICE_CONSOLE_SHOTS") or tempfile.mkdtemp(prefix="coppice-console-shots-")
    os.makedirs(d, exist_ok=True)
    print(f"\nconsole screenshots in {d}")
    return d


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The FlexClone runbook's state: a volume with a LUN mapped, its snapshot, a clone whose
    LUN was remapped to LUN ID 3 and brought online; a template to provision from."""
    from coppice.filer import Filer

    base = tmp_path_factory.mktemp("console-browser")
    p = str(base / "pool")
    with Filer.create(p) as f:
        f.vol_create("fvol_master", "20g")
        f.lun_create("/vol/fvol_master/lun0", "10g", ostype="linux")
        dev = f.open_lun("/vol/fvol_master/lun0")
        dev.pwrite(0, os.urandom(4 << 20))  # data the clones share with their parent
        dev.flush()
        dev.close()
        f.igroup_create("esx1", ["iqn.2026-01.org.example:host1"], ostype="linux")
        f.lun_map("/vol/fvol_master/lun0", "esx1", 0)
        f.snap_create("fvol_master", "clone_base_snapshot")
        f.clone_create("fvol_clone1", "fvol_master", "clone_base_snapshot")
        f.lun_unmap("/vol/fvol_clone1/lun0", "esx1")
        f.lun_map("/vol/fvol_clone1/lun0", "esx1", 3)
        f.lun_online("/vol/fvol_clone1/lun0")
    old = os.environ.get("COPPICE_SPACE_SAMPLE_SECONDS")
    os.environ["COPPICE_SPACE_SAMPLE_SECONDS"] = "1"
    try:
        s = Served(
            p, extra_args=("--connect", "test:///default", "--import-dir", str(base))
        )  # posts a host path
    finally:
        if old is None:
            os.environ.pop("COPPICE_SPACE_SAMPLE_SECONDS", None)
        else:
            os.environ["COPPICE_SPACE_SAMPLE_SECONDS"] = old
    image = small_image(str(base / "tiny.raw"))
    r = s.http.post("/templates", json={"name": "tiny", "image": image, "memory_mib": 128})
    assert r.status_code == 201, r.text
    r = s.http.post(
        "/custspecs", json={"name": "web", "hostname": "{vm}", "user": "admin", "runcmd": ["true"]}
    )
    assert r.status_code == 201, r.text
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,900",
    ):
        opts.add_argument(a)
    profile = tempfile.mkdtemp(prefix="coppice-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    try:
        drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    except Exception as e:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"cannot start headless chromium through {CHROMEDRIVER}: {e}")
    drv.set_page_load_timeout(WAIT)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(drv, cond, what: str, timeout: float = WAIT):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # views are redrawn as job events arrive: an element found a moment ago may be gone; look again
    try:
        return WebDriverWait(
            drv, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
        ).until(lambda d: cond(d))
    except TimeoutException:
        raise AssertionError(
            f"timed out waiting for {what}; page: {drv.current_url}\n{body_text(drv)[:2000]}"
        ) from None


def body_text(drv) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.TAG_NAME, "body").text


def css(drv, sel):
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, sel)


def goto(drv, view: str, ready_sel: str):
    drv.execute_script(f"location.hash = '#{view}'")
    wait(drv, lambda d: d.execute_script("return document.getElementById('main').dataset.view") == view, view)
    return wait(drv, lambda d: css(d, ready_sel), ready_sel)


def click(drv, sel: str, what: str = ""):
    """Find and click in one retried step: a view redrawn by a job event between
    the find and the click leaves a stale element, so look again (a stale click
    never reached the page, so a retry cannot click twice)."""

    def attempt(d):
        found = css(d, sel)
        if not found:
            return False
        found[0].click()
        return True

    wait(drv, attempt, what or sel)


def tree_action(kind: str, name: str, action: str) -> str:
    return f'#tree tr[data-kind="{kind}"][data-name="{name}"] [data-action="{action}"]'


def tree_row(drv, kind: str, name: str):
    rows = css(drv, f'#tree tr[data-kind="{kind}"][data-name="{name}"]')
    return rows[0] if rows else None


def pool_state(d: Served) -> dict:
    h = d.http
    vols = h.get("/volumes").json()
    return {
        "volumes": sorted((v["name"], v["parent"], v["snapshots"]) for v in vols),
        "snapshots": {v["name"]: h.get(f"/volumes/{v['name']}/snapshots").json() for v in vols},
        "luns": h.get("/luns").json(),
        "maps": h.get("/maps").json(),
        "used": h.get("/pool").json()["used_bytes"],
    }


# ---- the flows, in order ------------------------------------------------------------------------


def test_sign_in_wrong_token_refused_then_right_token(daemon, browser, shots):
    from selenium.webdriver.common.by import By

    drv = browser
    drv.get(daemon.url + "/")
    drv.find_element(By.ID, "token").send_keys("not-the-token")
    drv.save_screenshot(os.path.join(shots, "00-sign-in.png"))
    drv.find_element(By.ID, "signin").click()
    err = wait(drv, lambda d: css(d, "form.signin .error"), "the refusal")[0]
    assert "Wrong token" in err.text
    assert not css(drv, "#main[data-view]") and drv.get_cookie("coppice_session") is None
    drv.find_element(By.ID, "token").send_keys(daemon.token)
    drv.find_element(By.ID, "signin").click()
    wait(drv, lambda d: css(d, "#pool-kpis"), "the pool view")
    cookie = drv.get_cookie("coppice_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert drv.execute_script("return document.cookie") == ""  # HttpOnly: not readable by scripts
    wait(drv, lambda d: "live" in d.find_element(By.ID, "live").text, "the live job stream")


def test_runbook_state_tree_and_luns(daemon, browser, shots):
    drv = browser
    goto(drv, "volumes", "#tree tbody tr")
    master = tree_row(drv, "volume", "fvol_master")
    snap = tree_row(drv, "snapshot", "clone_base_snapshot")
    clone = tree_row(drv, "volume", "fvol_clone1")
    assert master is not None and snap is not None and clone is not None, body_text(drv)
    rows = css(drv, "#tree tbody tr")
    order = [r.get_attribute("data-name") for r in rows]
    assert order.index("fvol_master") < order.index("clone_base_snapshot") < order.index("fvol_clone1")
    assert [r.get_attribute("aria-level") for r in (master, snap, clone)] == ["1", "2", "3"]
    assert "busy" in snap.text and "held by clone fvol_clone1" in snap.text
    assert "clone" in clone.text and "not split" in clone.text
    assert "4.00 MiB" in clone.text  # shared with its parent: the 4 MiB written before the snapshot
    drv.save_screenshot(os.path.join(shots, "01-volumes.png"))
    css(drv, "#tree")[0].screenshot(os.path.join(shots, "volume-tree.png"))
    # a snapshot's clones fold away and come back (aria-expanded tells a screen reader)
    fold = 'button[aria-label="Hide the 1 clone(s) of fvol_master@clone_base_snapshot"]'
    click(drv, fold)
    wait(drv, lambda d: tree_row(d, "volume", "fvol_clone1") is None, "the clone folded away")
    unfold = 'button[aria-label="Show the 1 clone(s) of fvol_master@clone_base_snapshot"]'
    assert wait(drv, lambda d: css(d, unfold), unfold)[0].get_attribute("aria-expanded") == "false"
    click(drv, unfold)
    wait(drv, lambda d: tree_row(d, "volume", "fvol_clone1") is not None, "the clone back")

    goto(drv, "luns", "#luns tbody tr")
    lun = css(drv, '#luns tr[data-path="/vol/fvol_clone1/lun0"]')[0]
    assert "esx1 = LUN 3" in lun.text and "online" in lun.text
    master_lun = css(drv, '#luns tr[data-path="/vol/fvol_master/lun0"]')[0]
    assert "esx1 = LUN 0" in master_lun.text
    ig = css(drv, '#igroups tr[data-igroup="esx1"]')[0]
    assert "iqn.2026-01.org.example:host1" in ig.text and "LUN 3 → /vol/fvol_clone1/lun0" in ig.text
    # NBD connections per LUN come from the daemon's target: none open now
    assert lun.find_elements("css selector", "td")[4].text == "0"
    drv.save_screenshot(os.path.join(shots, "02-luns.png"))


def test_clone_from_the_page(daemon, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv = browser
    goto(drv, "volumes", "#tree tbody tr")
    click(drv, tree_action("snapshot", "clone_base_snapshot", "clone"))
    dlg = wait(
        drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None and d, "clone dialog"
    )
    assert dlg.switch_to.active_element.get_attribute("id") == "f-new"  # focus lands in the form
    drv.find_element(By.ID, "f-new").send_keys("fvol_clone2")
    drv.find_element(By.ID, "f-remap").click()
    drv.save_screenshot(os.path.join(shots, "03-clone-dialog.png"))
    drv.find_element(By.ID, "dialog-ok").click()
    wait(drv, lambda d: tree_row(d, "volume", "fvol_clone2"), "the new clone in the tree")
    assert drv.find_element(By.ID, "dialog").get_attribute("open") is None
    row = tree_row(drv, "volume", "fvol_clone2")
    assert row.get_attribute("aria-level") == "3"
    assert (
        row.find_elements("css selector", "td")[1].get_attribute("title")
        == "clone of fvol_master@clone_base_snapshot"
    )
    assert "clone fvol_clone2" in tree_row(drv, "snapshot", "clone_base_snapshot").text
    # search on the server: the hit comes with its place in the tree
    search = drv.find_element(By.ID, "vol-search")
    search.send_keys("clone2", Keys.ENTER)
    wait(drv, lambda d: len(css(d, "#tree tbody tr")) == 3, "the search's rows")
    assert [r.get_attribute("data-name") for r in css(drv, "#tree tbody tr")] == [
        "fvol_master",
        "clone_base_snapshot",
        "fvol_clone2",
    ]
    assert drv.switch_to.active_element.get_attribute("id") == "vol-search"
    drv.find_element(By.ID, "vol-search").send_keys(Keys.CONTROL, "a", Keys.DELETE, Keys.ENTER)
    wait(drv, lambda d: len(css(d, "#tree tbody tr")) > 3, "the whole tree again")
    out = run_cli(daemon.pool, "vol", "clone", "show")
    assert out.returncode == 0, out.stderr
    lines = {ln.split()[0]: ln.split() for ln in out.stdout.splitlines()[1:] if ln.strip()}
    assert lines["fvol_clone2"][1:3] == ["fvol_master", "clone_base_snapshot"], out.stdout
    # --remap from the form: the clone's LUN came up online with the lowest free ID
    lun = daemon.http.get("/luns/info", params={"path": "/vol/fvol_clone2/lun0"}).json()
    assert lun["online"] and lun["maps"] == [{"igroup": "esx1", "lun_id": 1}]


def test_refused_delete_of_busy_snapshot_changes_nothing(daemon, browser, shots):
    from selenium.webdriver.common.by import By

    drv = browser
    before = pool_state(daemon)
    goto(drv, "volumes", "#tree tbody tr")
    click(drv, tree_action("snapshot", "clone_base_snapshot", "delete"))
    wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None, "delete dialog")
    drv.find_element(By.ID, "dialog-ok").click()
    err = wait(drv, lambda d: [e for e in css(d, "#dialog-error") if e.is_displayed()], "the API's refusal")[
        0
    ]
    # the API's own message, word for word (asking the API again is refused the same way)
    r = daemon.http.delete("/volumes/fvol_master/snapshots/clone_base_snapshot")
    assert r.status_code == 409
    assert err.text == r.json()["message"]
    assert "snapshot is busy: clone" in err.text
    drv.save_screenshot(os.path.join(shots, "04-refused.png"))
    drv.find_element(By.ID, "dialog-cancel").click()
    assert pool_state(daemon) == before


def test_provision_five_vms_from_the_form(daemon, browser, shots):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    drv = browser
    goto(drv, "vms", "#provision-form")
    Select(drv.find_element(By.ID, "pv-template")).select_by_value("tiny")
    count = drv.find_element(By.ID, "pv-count")
    count.clear()
    count.send_keys("5")
    name = drv.find_element(By.ID, "pv-name")
    name.clear()
    name.send_keys("cweb{n:02}")
    Select(drv.find_element(By.ID, "pv-custspec")).select_by_value("web")
    spec = css(drv, '#custspecs tr[data-custspec="web"]')[0].text
    assert "{vm}" in spec and "admin" in spec and "1 command(s)" in spec
    assert "no" in css(drv, '#templates tr[data-template="tiny"]')[0].text  # a blank disk: not generalized
    connect = drv.find_element(By.ID, "pv-connect")
    assert connect.get_attribute("value") == "test:///default"
    seen = []  # progress the page showed while the job ran (it is pushed by the event stream)
    drv.find_element(By.ID, "pv-submit").click()

    def finished(d):
        # the panel is redrawn by every job event (and the whole view once the job ends)
        try:
            job = css(d, "#provision-job .job")
            if not job:
                return False
            pct = css(d, "#provision-percent")
            if pct:
                seen.append(pct[0].text)
            return job[0].get_attribute("data-state") in ("done", "failed")
        except StaleElementReferenceException:
            return False

    wait(drv, finished, "the provisioning job to finish", timeout=90)
    # the VM list is refreshed when the job ends; the panel keeps the finished job
    wait(drv, lambda d: len(css(d, "#vms tr[data-vm]")) == 5, "5 VMs in the list")
    job = drv.find_element(By.CSS_SELECTOR, "#provision-job .job")
    assert job.get_attribute("data-state") == "done", job.text
    assert drv.find_element(By.ID, "provision-percent").text == "100 %"
    assert drv.find_element(By.ID, "provision-progress").get_attribute("value") == "100"
    names = [li.get_attribute("data-vm") for li in css(drv, "#provisioned li")]
    assert names == [f"cweb{n:02}" for n in range(1, 6)]
    assert "Stage time" in job.text and "clone" in job.text
    assert seen, "no progress was shown"
    for n in range(1, 6):
        row = css(drv, f'#vms tr[data-vm="cweb{n:02}"]')[0]
        assert "tiny" in row.text and "test:///default" in row.text
    drv.save_screenshot(os.path.join(shots, "05-vms.png"))
    # power: start one VM from its row, then power it off (libvirt's test driver in the daemon)
    for label, state in (("Start VM cweb01", "running"), ("Power off VM cweb01", "shutoff")):
        click(drv, f'#vms button[aria-label="{label}"]')
        wait(
            drv,
            lambda d, state=state: [r for r in css(d, '#vms tr[data-vm="cweb01"]') if state in r.text],
            f"cweb01 {state}",
        )
    api_vms = sorted(v["name"] for v in daemon.http.get("/vms").json())
    assert api_vms == [f"cweb{n:02}" for n in range(1, 6)]
    assert daemon.http.get("/vms/cweb03").json()["custspec"] == "web"  # the form's choice reached the job
    # the redrawn form keeps the batch's choices
    assert drv.find_element(By.ID, "pv-name").get_attribute("value") == "cweb{n:02}"
    assert drv.find_element(By.ID, "pv-custspec").get_attribute("value") == "web"

    goto(drv, "jobs", "#jobs tbody tr[data-job]")
    text = wait(drv, lambda d: [r.text for r in css(d, '#jobs tr[data-state="done"]')], "the done job")[0]
    assert "provision" in text and "100 %" in text
    drv.save_screenshot(os.path.join(shots, "06-jobs.png"))


def test_nbd_connection_per_lun_and_space_plot(daemon, browser, shots):
    """A real NBD client writes 8 MiB into the new clone's LUN and stays connected: the LUNs
    view counts its connection, and the space plot (sampled by the daemon) shows the growth."""
    import nbd

    drv = browser
    before = daemon.http.get("/pool").json()["used_bytes"]
    r = daemon.http.post("/maps", json={"path": "/vol/fvol_clone2/lun0", "igroup": "coppice_host"})
    assert r.status_code == 201, r.text
    h = nbd.NBD()
    h.set_export_name("/vol/fvol_clone2/lun0")
    h.connect_tcp(daemon.nbd_host, str(daemon.nbd_port))
    try:
        data = os.urandom(1 << 20)
        for i in range(8):
            h.pwrite(data, (16 << 20) + i * len(data))
        h.flush()
        goto(drv, "luns", "#luns tbody tr")
        row = css(drv, '#luns tr[data-path="/vol/fvol_clone2/lun0"]')[0]
        cell = row.find_elements("css selector", "td")[4].text.splitlines()
        assert cell == ["1", "127.0.0.1"], row.text  # one connection, and who it is
        assert "coppice_host = LUN" in row.text
        drv.save_screenshot(os.path.join(shots, "02-luns-nbd.png"))
    finally:
        h.shutdown()

    assert daemon.http.get("/pool").json()["used_bytes"] >= before + (8 << 20)

    goto(drv, "pool", "#space-plot")

    def plotted(d):
        # "24 h" re-reads the history (the daemon samples every second here)
        click(d, '#space-card button[aria-pressed="true"]')
        time.sleep(0.5)
        samples = daemon.http.get("/console/api/space").json()["samples"]
        grown = [x for x in samples if x["used"] >= before + (8 << 20)]
        return (
            len(grown) >= 3
            and len(css(d, "#space-plot circle")) >= 6
            and "B" in css(d, "#saved-clones")[0].text
        )

    wait(drv, plotted, "samples after the write, and the savings")
    label = css(drv, "#space-plot")[0].get_attribute("aria-label")
    assert label.startswith("Physical space used, last 24 h"), label
    assert css(drv, "#space-plot path.line")
    saved = css(drv, "#saved-clones")[0].text
    assert saved != "0 B", saved  # the clones share the master's 4 MiB
    drv.execute_script("document.getElementById('status').replaceChildren()")
    drv.save_screenshot(os.path.join(shots, "07-pool.png"))
    css(drv, "#space-card")[0].screenshot(os.path.join(shots, "space-plot.png"))
    # the whole tree after the runs: the runbook's clones, the page's clone, the template's VMs
    goto(drv, "volumes", "#tree tbody tr")
    wait(drv, lambda d: tree_row(d, "volume", "cweb05"), "the VMs' clones in the tree")
    assert tree_row(drv, "volume", "cweb01").get_attribute("aria-level") == "3"
    css(drv, "#tree")[0].screenshot(os.path.join(shots, "volume-tree-full.png"))


def test_split_from_the_keyboard_runs_as_a_live_job(daemon, browser, shots):
    """Keyboard only: focus the clone's Split button, Enter opens the dialog with focus on its
    button, Enter starts the job; the Jobs view (fed by the event stream) shows it done."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv = browser
    goto(drv, "volumes", "#tree tbody tr")
    btn = tree_row(drv, "volume", "fvol_clone1").find_element(By.CSS_SELECTOR, '[data-action="split"]')
    assert btn.tag_name == "button" and btn.get_attribute("aria-label") == "Split clone fvol_clone1"
    drv.execute_script("arguments[0].focus()", btn)
    drv.switch_to.active_element.send_keys(Keys.ENTER)
    wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None, "split dialog")
    assert drv.switch_to.active_element.get_attribute("id") == "dialog-ok"
    assert "Needs about 4.00 MiB" in drv.find_element(By.ID, "dialog").text
    drv.switch_to.active_element.send_keys(Keys.ENTER)
    wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is None, "the dialog to close")
    # focus went back to the Split button the keyboard started from; when the job's end redraws
    # the tree (the clone is a volume of its own now, without a Split button) it stays in the view
    assert drv.switch_to.active_element.get_attribute("aria-label") == "Split clone fvol_clone1"
    wait(drv, lambda d: not css(d, '#tree button[aria-label="Split clone fvol_clone1"]'), "the tree redrawn")
    focused = drv.switch_to.active_element
    assert focused.get_attribute("id") == "main" or focused.tag_name == "button", focused.get_attribute(
        "outerHTML"
    )
    goto(drv, "jobs", "#jobs tbody tr[data-job]")
    text = wait(
        drv,
        lambda d: [r.text for r in css(d, '#jobs tr[data-state="done"]') if "clone_split" in r.text],
        "the split job done in the Jobs view",
    )[0]
    assert "fvol_clone1" in text and "100 %" in text
    drv.save_screenshot(os.path.join(shots, "08-jobs-split.png"))
    # split: no longer a clone, and the snapshot is no longer held by it
    goto(drv, "volumes", "#tree tbody tr")
    assert tree_row(drv, "volume", "fvol_clone1").get_attribute("aria-level") == "1"
    assert "fvol_clone1" not in tree_row(drv, "snapshot", "clone_base_snapshot").text
    assert [c["volume"] for c in daemon.http.get("/clones").json()].count("fvol_clone1") == 0


def test_dedup_scan_from_the_page_shows_phases_live(daemon, browser, shots):
    """Turn dedup on for a volume and scan it from its row: the scan runs as a job whose
    phases the Jobs view shows; asking to scan a volume without dedup shows the API's refusal."""
    from selenium.webdriver.common.by import By

    drv = browser
    goto(drv, "volumes", "#tree tbody tr")

    def open_dedup(name):
        click(drv, tree_action("volume", name, "dedup"))
        wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None, "dedup dialog")

    open_dedup("fvol_clone2")
    drv.find_element(By.ID, "f-scan").click()  # scan, but leave dedup off: refused by the API
    drv.find_element(By.ID, "dialog-ok").click()
    err = wait(drv, lambda d: [e.text for e in css(d, "#dialog-error") if e.is_displayed()], "the refusal")[0]
    r = daemon.http.post("/dedup/scans", json={"volumes": ["fvol_clone2"]})
    assert r.status_code >= 400 and err == r.json()["message"]
    drv.find_element(By.ID, "dialog-cancel").click()

    open_dedup("fvol_master")
    assert not drv.find_element(By.ID, "f-enabled").is_selected()
    drv.find_element(By.ID, "f-enabled").click()
    drv.find_element(By.ID, "f-scan").click()
    drv.find_element(By.ID, "dialog-ok").click()
    wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is None, "the dialog to close")
    assert daemon.http.get("/dedup/volumes/fvol_master").json()["enabled"] is True
    goto(drv, "jobs", "#jobs tbody tr[data-job]")
    text = wait(
        drv,
        lambda d: [r.text for r in css(d, '#jobs tr[data-state="done"]') if "dedup_scan" in r.text],
        "the dedup scan done in the Jobs view",
    )[0]
    assert "fvol_master" in text and "Phases:" in text, text
    drv.save_screenshot(os.path.join(shots, "09-jobs-dedup.png"))


def test_vm_refresh_and_destroy_from_the_page(daemon, browser):
    from selenium.webdriver.common.by import By

    drv = browser
    goto(drv, "vms", "#vms tr[data-vm]")
    before = daemon.http.get("/vms/cweb02").json()
    click(drv, '#vms button[aria-label="Refresh VM cweb02"]')
    wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None, "refresh dialog")
    drv.find_element(By.ID, "dialog-ok").click()
    wait(
        drv,
        lambda d: [m for m in css(d, "#status .msg") if "cweb02 refreshed from tiny@base" in m.text],
        "done",
    )
    after = daemon.http.get("/vms/cweb02").json()
    assert after["uuid"] == before["uuid"] and after["mac"] == before["mac"]  # same identity, new clone

    click(drv, '#vms button[aria-label="Destroy VM cweb04"]')
    wait(drv, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None, "destroy dialog")
    drv.find_element(By.ID, "dialog-ok").click()
    wait(drv, lambda d: not css(d, '#vms tr[data-vm="cweb04"]') and css(d, "#vms tr[data-vm]"), "cweb04 gone")
    assert "cweb04" not in [v["name"] for v in daemon.http.get("/vms").json()]
    assert "cweb04" not in [v["name"] for v in daemon.http.get("/volumes").json()]


def test_sign_out_ends_the_session(daemon, browser):
    from selenium.webdriver.common.by import By

    drv = browser
    old = drv.get_cookie("coppice_session")["value"]
    drv.find_element(By.ID, "signout").click()
    wait(drv, lambda d: css(d, "form.signin #token"), "the sign-in form")
    assert drv.get_cookie("coppice_session") is None
    # the old session is over on the daemon too, not only forgotten by the browser
    import httpx

    with httpx.Client(base_url=daemon.url, cookies={"coppice_session": old}, timeout=30) as c:
        assert c.get("/console/api/overview").status_code == 401
