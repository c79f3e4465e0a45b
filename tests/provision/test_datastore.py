"""Datastore signatures: copy detection, resignature, policies, rename."""

import re

import pytest

from coppice.provision import datastore as ds
from coppice.provision.provisioning_errors import BadPolicy, DatastoreIsCopy, NotADatastore

from .prov_helpers import filer  # noqa: F401


def _ds_with_lun(filer, vol):
    ds.create(filer, vol, name="prod")
    filer.lun_create(f"/vol/{vol}/vm0.disk0", "1m")
    ds.stamp(filer, vol)
    filer.snap_create(vol, "s1")


def test_original_is_not_a_copy(filer):
    # a datastore attached under its own signature is an original
    _ds_with_lun(filer, "dsv")
    assert ds.copy_reason(filer, "dsv") is None
    assert ds.show(filer, "dsv")[0]["attached"]


@pytest.mark.parametrize("policy", ["ask", "off"])
def test_copy_refused_by_ask_and_off(filer, policy):
    # a clone carries its parent's signature: ask/off refuse it and change nothing
    _ds_with_lun(filer, "dsv")
    filer.clone_create("dsc", "dsv", "s1")
    with pytest.raises(DatastoreIsCopy):
        ds.attach(filer, "dsc", policy)
    assert ds.descriptor(filer, "dsc")["uuid"] == ds.descriptor(filer, "dsv")["uuid"]


def test_auto_resignatures_with_vmfs_name(filer):
    # auto: new uuid, name snap-XXXXXXXX-prod, serials of the clone's LUNs; renamable
    _ds_with_lun(filer, "dsv")
    filer.clone_create("dsc", "dsv", "s1")
    r = ds.attach(filer, "dsc", "auto")
    assert r["copy"] and r["resignatured"] and re.fullmatch(r"snap-[0-9a-f]{8}-prod", r["name"])
    d = ds.descriptor(filer, "dsc")
    assert d["lun_serials"]["vm0.disk0"] == filer.lun_info("/vol/dsc/vm0.disk0")["serial"]
    assert ds.copy_reason(filer, "dsc") is None
    assert ds.resignature_name(r["name"]).endswith("-prod")  # no snap-snap- nesting
    ds.rename(filer, "dsc", "prod-copy")
    assert ds.descriptor(filer, "dsc")["name"] == "prod-copy"


def test_errors(filer):
    # a plain volume is not a datastore; unknown policies are refused
    filer.vol_create("plain", "1g")
    with pytest.raises(NotADatastore):
        ds.descriptor(filer, "plain")
    with pytest.raises(BadPolicy):
        ds.check_policy("sometimes")
