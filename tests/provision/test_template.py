"""Template import: any qemu-img format, thin, snapshots imported and base,
generalization of the tiny template's identity; delete refused while used."""

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
    assert r["generalized"]["method"] == "none"
    dev = filer.open_lun("/vol/tpl_g/.snapshot/base/vm0.disk0")
    assert bytes(dev.pread(1 << 20, 11)) == b"golden data"
    dev.close()


def test_tiny_template_generalized_on_base_only(filer, tiny_template):
    # the machine-id stays in snapshot `imported`, is gone from `base`
    template.import_image(filer, "tiny", tiny_template.disk_image)

    def ident(snap):
        dev = filer.open_lun(f"/vol/tpl_tiny/.snapshot/{snap}/vm0.disk0")
        try:
            return bytes(dev.pread(gi.IDENTITY_OFFSET, 64)).rstrip(b"\0")
        finally:
            dev.close()

    assert ident("imported") == f"machine-id={tiny_template.machine_id}\n".encode()
    assert ident("base") == b""


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
