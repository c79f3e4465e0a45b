"""Host paths in requests (template image, kernel, initrd; custspec
ssh_key_file) against real files: only from the import directory, never
through a symlink or into a FIFO, images with external references refused,
never a file's content in an error, and a refused request changes nothing."""

import os
import subprocess
import threading

import pytest

from coppice.provision import custspec, template
from coppice.provision.import_dir import ImportPolicy, UploadArea
from coppice.provision.provisioning_errors import BadImage, HostPathRefused, SSHKeyUnreadable
from tests.provision.prov_helpers import small_image

SECRET = b"root:$6$coppice-secret-line:19000:0:99999:7:::\n"


@pytest.fixture
def dirs(tmp_path):
    inside, outside = tmp_path / "import", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_bytes(SECRET)
    return inside, outside, secret


def _refused(filer, policy, exc=(HostPathRefused, BadImage), **kw):
    dump = filer.dump()
    kw.setdefault("image", kw.pop("image", None))
    with pytest.raises(exc) as ei:
        template.import_image(filer, "t", policy=policy, **kw)
    msg = str(ei.value)
    assert b"coppice-secret" not in msg.encode() and "root:" not in msg
    assert filer.dump() == dump and template.list_(filer) == []
    return msg


def test_image_outside_the_import_dir_refused(filer, dirs):
    # a real image, outside the directory: refused, even through a symlinked directory inside it
    inside, outside, _ = dirs
    img = small_image(str(outside / "disk.raw"))
    pol = ImportPolicy([str(inside)])
    assert "import directory" in _refused(filer, pol, image=img)
    os.symlink(outside, inside / "sub")
    assert "import directory" in _refused(filer, pol, image=str(inside / "sub" / "disk.raw"))
    assert "absolute" in _refused(filer, pol, image="disk.raw")
    assert "no host files" in _refused(filer, ImportPolicy(()), image=img)


def test_symlink_to_a_secret_refused(filer, dirs):
    # inside/evil.raw -> /etc/shadow (or a stand-in): a symlink is never followed, whatever the policy
    inside, _, secret = dirs
    for target in (secret, "/etc/shadow"):
        link = inside / f"evil{abs(hash(str(target)))}.raw"
        os.symlink(target, link)
        for pol in (ImportPolicy([str(inside)]), ImportPolicy.local()):
            assert "symbolic link" in _refused(filer, pol, image=str(link))
            with pytest.raises(SSHKeyUnreadable):
                custspec.create(filer, "k", ssh_key_file=str(link), policy=pol)


def test_fifo_refused_without_blocking(filer, dirs):
    # a FIFO nobody writes to: refused at once (the open does not wait for a writer)
    inside, _, _ = dirs
    fifo = inside / "pipe.raw"
    os.mkfifo(fifo)
    done = threading.Event()
    out = {}

    def attempt():
        try:
            out["msg"] = _refused(filer, ImportPolicy([str(inside)]), image=str(fifo))
        finally:
            done.set()

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    if not done.wait(30):
        w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # unblock the reader so the thread ends
        os.close(w)
        pytest.fail("importing a FIFO blocked")
    assert "not a regular file" in out["msg"]
    with pytest.raises(SSHKeyUnreadable) as ei:
        custspec.create(filer, "k", ssh_key_file=str(fifo), policy=ImportPolicy([str(inside)]))
    assert "not a regular file" in str(ei.value)


def test_kernel_and_initrd_follow_the_same_rule(filer, dirs):
    # the image is fine, the kernel lies outside or is a symlink: refused, nothing made
    inside, outside, secret = dirs
    img = small_image(str(inside / "disk.raw"))
    pol = ImportPolicy([str(inside)])
    assert "kernel" in _refused(filer, pol, image=img, kernel=str(secret))
    os.symlink(secret, inside / "vmlinuz")
    assert "symbolic link" in _refused(filer, pol, image=img, kernel=str(inside / "vmlinuz"))
    (inside / "k").write_bytes(b"kernel")
    assert "initrd" in _refused(filer, pol, image=img, kernel=str(inside / "k"), initrd="/etc/passwd")


def test_vmdk_whose_extent_names_a_host_file_refused(filer, dirs):
    # a VMDK descriptor with its extent at /etc/passwd: refused before qemu-img opens the extent
    inside, _, _ = dirs
    desc = inside / "evil.vmdk"
    desc.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n# Extent description\nRW 8 FLAT "/etc/passwd" 0\n\n'
        'ddb.virtualHWVersion = "4"\nddb.geometry.cylinders = "1"\nddb.geometry.heads = "16"\n'
        'ddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n'
    )
    msg = _refused(filer, ImportPolicy([str(inside)]), image=str(desc))
    assert "VMDK descriptor" in msg and "passwd" not in msg


def test_qcow2_with_a_backing_file_or_data_file_outside_refused(filer, dirs):
    # qcow2 images that name another host file (backing file, external data file): refused
    inside, outside, secret = dirs
    base = small_image(str(outside / "base.raw"))
    over = inside / "over.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, str(over)], check=True
    )
    assert "backing file" in _refused(filer, ImportPolicy([str(inside)]), image=str(over))
    ext = inside / "ext.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            f"data_file={outside / 'data.raw'}",
            str(ext),
            "8M",
        ],
        check=True,
    )
    assert "external data file" in _refused(filer, ImportPolicy([str(inside)]), image=str(ext))


def test_a_single_file_vmdk_inside_is_imported(filer, dirs):
    # the rule is not a blanket refusal: a self-contained VMDK in the import dir imports
    inside, _, _ = dirs
    raw = small_image(str(inside / "disk.raw"))
    vmdk = inside / "disk.vmdk"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "vmdk", raw, str(vmdk)], check=True)
    r = template.import_image(filer, "v", str(vmdk), policy=ImportPolicy([str(inside)]))
    assert r["format"] == "vmdk" and r["imported_bytes"] > 0


def test_ssh_key_errors_never_quote_the_file(filer, dirs):
    # a private key (or any non-key line) named as the public key: the error names the line, not its text
    inside, _, _ = dirs
    priv = inside / "id_ed25519"
    priv.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-coppice-secret\n")
    with pytest.raises(SSHKeyUnreadable) as ei:
        custspec.create(filer, "k", ssh_key_file=str(priv), policy=ImportPolicy([str(inside)]))
    assert (
        "line 1" in str(ei.value) and "coppice-secret" not in str(ei.value) and "BEGIN" not in str(ei.value)
    )
    assert custspec.list_(filer) == []


def test_upload_names_are_plain_and_uploads_are_private(tmp_path):
    # an upload's name cannot climb out of the upload area; the area is 0700, files 0600
    import asyncio

    area = UploadArea(str(tmp_path / "state"))
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(HostPathRefused):
            asyncio.run(area.receive(bad, _chunks([b"x"])))

    path = asyncio.run(area.receive("disk.raw", _chunks([b"a" * 10, b"b"])))
    assert open(path, "rb").read() == b"a" * 10 + b"b" and area.owns(path)
    assert os.stat(area.dir).st_mode & 0o777 == 0o700 and os.stat(path).st_mode & 0o777 == 0o600
    area.discard(path)
    assert not os.path.exists(path)
    area.discard("/etc/passwd")  # not an upload: left alone
    assert os.path.exists("/etc/passwd")


async def _chunks(items):
    for c in items:
        yield c


def test_daemon_reads_host_files_only_from_its_import_dir(tmp_path, dirs):
    # coppice serve --import-dir DIR: a path outside is a 400 naming the rule; inside imports;
    # uploaded files import without any import dir and are gone afterwards
    from tests.api.conftest import Served

    inside, outside, secret = dirs
    pool = str(tmp_path / "pool")
    from coppice.filer import Filer

    Filer.create(pool).close()
    img_in = small_image(str(inside / "in.raw"))
    img_out = small_image(str(outside / "out.raw"))
    s = Served(pool, extra_args=("--import-dir", str(inside)))
    try:
        r = s.http.post("/templates", json={"name": "out", "image": img_out})
        assert r.status_code == 400 and "import directory" in r.json()["message"], r.text
        r = s.http.post("/templates", json={"name": "out", "image": img_in, "kernel": str(secret)})
        assert r.status_code == 400 and "coppice-secret" not in r.text, r.text
        assert s.http.get("/templates").json() == []
        r = s.http.post("/templates", json={"name": "inside", "image": img_in})
        assert r.status_code == 201, r.text
        with open(img_out, "rb") as f:
            up = s.http.put("/uploads/out.raw", content=f.read())
        assert up.status_code == 201
        r = s.http.post("/templates", json={"name": "up", "image": up.json()["path"]})
        assert r.status_code == 201 and r.json()["imported_bytes"] == 8192, r.text
        assert not os.path.exists(up.json()["path"])
    finally:
        assert s.stop() == 0
