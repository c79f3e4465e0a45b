"""Template import: any qemu-img format, thin, snapshots imported and base;
the tiny template built generalized goes through the same generalization
path as any disk; delete refused while used. (Generalization of real Linux
file systems: test_generalize.py and tests/realguest.)"""

import pytest

from coppice.provision import guest_image as gi
from coppice.provision import template
from coppice.provision.provisioner import Provisioner
from coppice.provision.provisioning_errors import BadImage, TemplateBusy, TemplateExists

from .prov_helpers import filer, small_image, uniq  # noqa: F401


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk"])
def test_import_formats(filer, tmp_path, fmt):
    # the LUN holds the image's bytes, only its data is written (thin)
    img = small_image(str(tmp_path / f"g.{fmt}"), fmt=fmt)
    r = template.import_image(filer, "g", img)
    assert r["format"] == fmt and r["virtual_size"] == 8 << 20 and r["imported_bytes"] == 8192
    # no file system on it: the probe says so, no appliance, imported ungeneralized with the reason
    assert r["generalized"]["method"] == "probe" and r["is_generalized"] is False
    dev = filer.open_lun("/vol/tpl_g/.snapshot/base/vm0.disk0")
    assert bytes(dev.pread(1 << 20, 11)) == b"golden data"
    dev.close()


def test_tiny_template_is_built_generalized(filer, tiny_template):
    # no special case: the tiny disk (no file system) goes through the same path as any image, and
    # carries no identity in the first place, so imported and base hold no machine-id
    r = template.import_image(filer, "tiny", tiny_template.disk_image)
    assert r["generalized"]["method"] == "probe" and not r["is_generalized"]

    def ident(snap):
        dev = filer.open_lun(f"/vol/tpl_tiny/.snapshot/{snap}/vm0.disk0")
        try:
            return bytes(dev.pread(gi.IDENTITY_OFFSET, gi.IDENTITY_SIZE))
        finally:
            dev.close()

    assert ident("imported") == ident("base") == bytes(gi.IDENTITY_SIZE)


def test_bad_images_and_duplicates(filer, tmp_path):
    # unreadable or non-image files and duplicate names are clear errors that leave nothing
    with pytest.raises(BadImage):
        template.import_image(filer, "x", str(tmp_path / "missing.img"))
    img = small_image(str(tmp_path / "g.raw"))
    template.import_image(filer, "g", img)
    with pytest.raises(TemplateExists):
        template.import_image(filer, "g", img)
    assert [v.name for v in filer.pool.list_volumes()] == ["tpl_g"]


def test_delete_refused_while_vms_depend(filer, tmp_path):
    # delete refused while a VM depends on the template; allowed once it is gone
    template.import_image(filer, "g", small_image(str(tmp_path / "g.raw")))
    name = uniq("dep")
    Provisioner(filer).provision("g", 1, name)
    with pytest.raises(TemplateBusy):
        template.delete(filer, "g")
    from coppice.provision import vm

    vm.destroy(filer, name)
    template.delete(filer, "g")
    assert template.list_(filer) == [] and not filer.pool.has_volume("tpl_g")
