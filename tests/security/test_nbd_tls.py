"""--require-tls means a client certificate too, unless relaxed on purpose."""

from __future__ import annotations

import logging
import os
import shutil

from coppice.nbd import tls
from tests.nbd.conftest import run
from tests.security.nbd_target import HOST_A, nbd_pool  # noqa: F401 (fixture)


def setup(f):
    d = os.path.join(f.dir, "pki")
    tls.init_tls_dir(d)
    with_cert = tls.create_client_cert(d, "host-a", os.path.join(d, "clients", "host-a"))
    anonymous = os.path.join(d, "clients", "anonymous")  # trusts the CA, has no certificate
    os.makedirs(anonymous)
    shutil.copy(os.path.join(d, "ca-cert.pem"), anonymous)
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("g", ["host-a", HOST_A], protocol="nbd")
    f.lun_map("/vol/v/lun0", "g")
    return d, with_cert, anonymous


def info(port, certs):
    uri = f"nbds://127.0.0.1:{port}//vol/v/lun0?tls-certificates={certs}"
    return run("nbdinfo", "--size", uri, check=False)


def test_require_tls_refuses_a_tls_client_without_a_certificate(nbd_pool, caplog):
    d, with_cert, anonymous = setup(nbd_pool)
    port = nbd_pool.serve(tls_context=tls.server_context(d), require_tls=True).address[1]
    with caplog.at_level(logging.WARNING, logger="coppice.nbd"):
        p = info(port, anonymous)
    assert p.returncode != 0
    assert any("client certificate required" in r.getMessage() for r in caplog.records)
    p = info(port, with_cert)
    assert p.returncode == 0 and p.stdout.strip() == str(4 << 20), p.stderr


def test_relaxed_require_tls_accepts_a_client_without_a_certificate(nbd_pool):
    d, _with_cert, anonymous = setup(nbd_pool)
    s = nbd_pool.serve(tls_context=tls.server_context(d), require_tls=True, require_client_cert=False)
    p = info(s.address[1], anonymous)
    assert p.returncode == 0 and p.stdout.strip() == str(4 << 20), p.stderr
