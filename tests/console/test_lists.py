"""The console's server-side lists: paging and search over many volumes and VMs, in process."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

N = 120


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from coppice.api.app import create_app
    from coppice.api.hypervisors import Hypervisors
    from coppice.filer import Filer
    from coppice.provision import registry

    f = Filer.create(str(tmp_path_factory.mktemp("console-lists") / "pool"))
    f.vol_create("gold", "1g")
    f.lun_create("/vol/gold/lun0", "10m")
    f.snap_create("gold", "base")
    f.vol_create("other", "1g")
    for i in range(N):
        f.clone_create(f"c{i:04d}", "gold", "base")
        name = f"vm{i:04d}"
        rec = {
            "name": name,
            "volume": f"c{i:04d}",
            "slot": name,
            "uri": "test:///default",
            "igroup": "coppice_host",
        }
        rec |= {"uuid": str(uuid.UUID(int=i + 1)), "mac": f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}"}
        registry.put(f, registry.VM, name, {**rec, "template": "gold", "base_snapshot": "base"})
    f.snap_create("c0007", "mine")
    f.clone_create("deep", "c0007", "mine")
    app = create_app(f, None, token="tok")
    app.state.hypervisors = Hypervisors(["test:///default"])
    c = TestClient(app, headers={"Authorization": "Bearer tok"})
    yield c
    f.close()


def test_tree_pages_in_display_order(client):
    r = client.get("/console/api/tree", params={"limit": 100, "expand": "gold@base"})
    page = r.json()
    # gold, base, N clones, c0007's snapshot and its clone, other
    assert page["total"] == 1 + 1 + N + 2 + 1
    rows = page["rows"]
    assert len(rows) == 100
    assert [(x["kind"], x["name"], x["depth"]) for x in rows[:4]] == [
        ("volume", "gold", 0),
        ("snapshot", "base", 1),
        ("volume", "c0000", 2),
        ("volume", "c0001", 2),
    ]
    base = rows[1]
    assert base["busy"] and base["held_by_count"] == N and len(base["held_by"]) == 5
    names = [x["name"] for x in rows]
    assert names[names.index("c0007") + 1 : names.index("c0007") + 3] == ["mine", "deep"]
    last = client.get("/console/api/tree", params={"offset": 100, "limit": 100, "expand": "gold@base"}).json()
    assert [x["name"] for x in last["rows"]][-1] == "other" and len(last["rows"]) == page["total"] - 100
    beyond = client.get("/console/api/tree", params={"offset": 10_000, "expand": "gold@base"}).json()
    assert beyond["rows"] == [] and beyond["total"] == page["total"]


def test_tree_search_brings_ancestors(client):
    page = client.get("/console/api/tree", params={"q": "DEEP"}).json()
    assert [(x["name"], x.get("match", False)) for x in page["rows"]] == [
        ("gold", False),
        ("base", False),
        ("c0007", False),
        ("mine", False),
        ("deep", True),
    ]
    page = client.get("/console/api/tree", params={"q": "c00", "limit": 200}).json()
    matches = [x["name"] for x in page["rows"] if x.get("match")]
    assert matches == [f"c{i:04d}" for i in range(100)]
    assert page["total"] == 2 + 100
    assert client.get("/console/api/tree", params={"q": "nothing-like-it"}).json()["total"] == 0


def test_vms_page_and_search(client):
    page = client.get("/console/api/vms", params={"offset": 100, "limit": 50}).json()
    assert page["total"] == N and [v["name"] for v in page["rows"]] == [f"vm{i:04d}" for i in range(100, N)]
    # libvirt is asked about the page's rows only; these records have no domain behind them
    assert {v["state"] for v in page["rows"]} == {"undefined"}
    assert page["hypervisors"] == ["test:///default"]
    hit = client.get("/console/api/vms", params={"q": "VM011"}).json()
    assert [v["name"] for v in hit["rows"]] == [f"vm{i:04d}" for i in range(110, 120)]


def test_bad_paging_is_a_clear_422(client):
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"q": "x" * 300}):
        r = client.get("/console/api/tree", params=params)
        assert r.status_code == 422, params
        assert r.json()["error"] == "InvalidRequest"


def test_big_snapshots_fold_and_unfold(client):
    # base holds 120 clones (> AUTO_COLLAPSE): folded unless asked, its row says so
    page = client.get("/console/api/tree", params={"limit": 500}).json()
    names = [x["name"] for x in page["rows"]]
    assert names == ["gold", "base", "other"]
    assert page["rows"][1]["collapsed"] is True and page["rows"][1]["held_by_count"] == N
    page = client.get("/console/api/tree", params={"limit": 500, "expand": "gold@base"}).json()
    assert page["total"] == 1 + 1 + N + 2 + 1 and page["rows"][1]["collapsed"] is False
    # a small one folds when asked; a search ignores folds (a hit is always shown)
    page = client.get(
        "/console/api/tree", params={"limit": 500, "expand": "gold@base", "collapse": "c0007@mine"}
    ).json()
    assert "deep" not in [x["name"] for x in page["rows"]] and page["total"] == 1 + 1 + N + 1 + 1
    assert [x["name"] for x in client.get("/console/api/tree", params={"q": "deep"}).json()["rows"]][
        -1
    ] == "deep"


def test_savings_are_the_dedup_facades_pool_figures(client):
    # The console's savings panel: the pool part of `df -s`, through the dedup façade.
    r = client.get("/console/api/savings", params={"fresh": "true"})
    assert r.status_code == 200, r.text
    p = r.json()["pool"]
    assert p["provisioned_blocks"] >= 122 * (10 << 20) // p["block_size"]  # gold, 120 clones, deep
    assert p["logical_blocks"] == p["physical_blocks"] + p["saved_dedup_blocks"] + p["saved_clones_blocks"]
