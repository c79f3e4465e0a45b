"""`coppice tls init|client` make files a real TLS NBD client accepts: a
pool served with --require-tls, a LUN mapped to an igroup naming the
client certificate's CN, read with nbdinfo over nbds://."""

import os
import shutil
import subprocess
import sys

import pytest

from coppice.filer import Filer
from coppice.nbd.server import NBDServer
from coppice.nbd.tls import server_context


def coppice(*args):
    return subprocess.run([sys.executable, "-m", "coppice.cli.main", *args], capture_output=True, text=True)


def test_tls_init_and_client_cert_work_with_nbdinfo(tmp_path, pool_dir):
    assert shutil.which("nbdinfo"), (
        "nbdinfo is not installed: run scripts/install.sh (Debian package libnbd-bin)"
    )
    tls_dir, cdir, other = str(tmp_path / "tls"), str(tmp_path / "host1"), str(tmp_path / "host2")
    r = coppice("tls", "init", tls_dir)
    assert r.returncode == 0, r.stderr
    assert {"ca-cert.pem", "server-cert.pem", "server-key.pem"} <= set(os.listdir(tls_dir))
    assert coppice("tls", "client", tls_dir, "iqn.2026-01.org.example:host1", cdir).returncode == 0
    assert coppice("tls", "client", tls_dir, "iqn.2026-01.org.example:host2", other).returncode == 0
    assert oct(os.stat(os.path.join(cdir, "client-key.pem")).st_mode & 0o777) == "0o600"
    # Refused without --force: the files exist.
    r = coppice("tls", "client", tls_dir, "iqn.2026-01.org.example:host1", cdir)
    assert r.returncode != 0 and "Error:" in r.stderr

    f = Filer.create(pool_dir)
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "8m")
    f.igroup_create("g1", ["iqn.2026-01.org.example:host1"])
    f.lun_map("/vol/v/lun0", "g1")
    srv = NBDServer(
        f.resolver(), port=0, tls_context=server_context(tls_dir, require_client_cert=True), require_tls=True
    ).start()
    try:
        port = srv.address[1]
        ok = subprocess.run(
            ["nbdinfo", "--list", f"nbds://127.0.0.1:{port}?tls-certificates={cdir}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0, ok.stderr
        assert "/vol/v/lun0" in ok.stdout
        denied = subprocess.run(
            ["nbdinfo", "--list", f"nbds://127.0.0.1:{port}?tls-certificates={other}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "/vol/v/lun0" not in denied.stdout
    finally:
        srv.shutdown()
        f.close()
