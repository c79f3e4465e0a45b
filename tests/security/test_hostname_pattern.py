"""Host name and VM name patterns are a small language of their own ({vm},
{n}, {n:03}, {template}): no attribute access, no huge widths, clear errors,
and a refused pattern creates nothing."""

import pytest

from coppice.provision import custspec
from coppice.provision.pattern import MAX_WIDTH
from coppice.provision.provisioner import Provisioner, expand_pattern
from coppice.provision.provisioning_errors import BadCustSpec, BadNamePattern
from tests.provision.prov_helpers import TEST_URI, snapshot_state, uniq

ATTACKS = [
    "{vm.__class__}",  # attribute access leaked values through str.format
    "{vm.nope}",  # was a 500
    "{n:50000000}",  # was a 50 MB response
    "{n!r}",
    "{vm[0]}",
    "{0}",
    "{}",
    "{n:>9}",
    "{vm:10}",  # width on text
    "{nope}",
    "host{",
    "host}",
]


@pytest.mark.parametrize("rule", ATTACKS)
def test_bad_hostname_rule_refused_at_spec_creation(filer, rule):
    # each is a clear BadCustSpec naming the pattern; no spec is stored
    with pytest.raises(BadCustSpec) as ei:
        custspec.create(filer, "s", hostname=rule)
    msg = str(ei.value)
    assert repr(rule) in msg and "{vm}" in msg and len(msg) < 600
    assert custspec.list_(filer) == []


@pytest.mark.parametrize("pattern", ["web{n.real}", "web{n:0100}", "web{n:99999999}", "web{vm}", "web{n:x}"])
def test_bad_vm_name_pattern_refused(pattern):
    with pytest.raises(BadNamePattern) as ei:
        expand_pattern(pattern, 2)
    assert repr(pattern) in str(ei.value)


def test_the_language():
    # {n}, {n:03}, {n:3}, {{ }} literal, {template} and {vm}; widths up to MAX_WIDTH
    assert custspec.hostname_for("node-{n:03}", "web_1", 7) == "node-007"
    assert custspec.hostname_for("{vm}.lab.example", "Web_1", 7) == "web-1.lab.example"
    assert custspec.hostname_for("{template}-{n}", "x", 2, "gold_img") == "gold-img-2"
    with pytest.raises(BadNamePattern):
        expand_pattern("web{n:3}x", 1)  # 'web  1x' is no valid VM name
    assert expand_pattern(f"w{{n:0{MAX_WIDTH}}}", 1) == ["w" + "0" * (MAX_WIDTH - 1) + "1"]
    with pytest.raises(BadNamePattern):
        expand_pattern(f"w{{n:0{MAX_WIDTH + 1}}}", 1)


def test_template_field_reaches_the_guest(filer, hv, tpl):
    # a spec with {template}-{n} gives each guest that host name, in its seed
    from coppice.provision import vm

    custspec.create(filer, "t", hostname="{template}-{n:02}")
    stem = uniq("tp")
    s = Provisioner(filer).provision(tpl, 2, stem + "{n}", "t", TEST_URI)
    assert len(s.ok) == 2
    assert "local-hostname: gold-02" in vm.seed_files(filer, stem + "2")["meta-data"]


def test_stored_spec_with_a_bad_rule_fails_cleanly(filer, hv, tpl):
    # a spec edited in the pool's records to an attribute-access rule: provisioning refuses, creates nothing
    from coppice.provision import registry

    custspec.create(filer, "evil", hostname="{vm}")
    d = registry.get(filer, registry.CUSTSPEC, "evil")
    registry.put(filer, registry.CUSTSPEC, "evil", dict(d, hostname="{vm.__class__.__mro__}"))
    before = snapshot_state(filer, hv)
    with pytest.raises(BadCustSpec):
        Provisioner(filer).provision(tpl, 2, uniq("ev") + "{n}", "evil", TEST_URI)
    assert snapshot_state(filer, hv) == before
