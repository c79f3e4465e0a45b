"""TLS: client certificates name the initiator; QEMU and libnbd clients
connect with x509 credentials; require_tls refuses clear-text clients."""

import json
import os

import nbd
import pytest

from coppice.nbd import protocol as P
from coppice.nbd import tls
from tests.nbd.conftest import MiB, run
from tests.nbd.rawclient import RawClient


@pytest.fixture
def pki(workdir):
    d = os.path.join(workdir, "pki")
    tls.init_tls_dir(d)
    clients = {}
    for name in ("host-a", "host-b"):
        clients[name] = tls.create_client_cert(d, name, os.path.join(d, "clients", name))
    return d, clients


def allow_host_a(name, initiator):
    # "disk" only for the TLS initiator host-a; "other" for any TLS client.
    if not initiator.tls:
        return False
    return name != "disk" or initiator.name == "host-a"


def test_layout_matches_qemu_tls_creds_x509(pki):
    d, clients = pki
    for f in ("ca-cert.pem", "ca-key.pem", "server-cert.pem", "server-key.pem"):
        assert os.path.exists(os.path.join(d, f))
    for f in ("ca-cert.pem", "client-cert.pem", "client-key.pem"):
        assert os.path.exists(os.path.join(clients["host-a"], f))
    assert os.stat(os.path.join(d, "server-key.pem")).st_mode & 0o077 == 0


def test_nbdinfo_over_tls_with_client_cert(serve, pki):
    # nbds:// with tls-certificates: the initiator is the cert's CN.
    d, clients = pki
    s = serve(size=MiB, allow=allow_host_a, tls_context=tls.server_context(d))
    out = run(
        "nbdinfo", "--list", "--json", s.uri("disk", "nbds", f"tls-certificates={clients['host-a']}")
    ).stdout
    assert {e["export-name"] for e in json.loads(out)["exports"]} == {"disk", "ro", "other"}
    out = run(
        "nbdinfo", "--list", "--json", s.uri("other", "nbds", f"tls-certificates={clients['host-b']}")
    ).stdout
    assert {e["export-name"] for e in json.loads(out)["exports"]} == {"ro", "other"}
    names = {i.name for i in s.resolver.seen if i.tls}
    assert names == {"host-a", "host-b"}


def test_qemu_img_with_tls_creds_object(serve, pki):
    # QEMU's tls-creds-x509 (endpoint=client) reads and writes through TLS.
    d, clients = pki
    s = serve(size=4 * MiB, allow=allow_host_a, tls_context=tls.server_context(d))
    obj = f"tls-creds-x509,id=tls0,dir={clients['host-a']},endpoint=client"
    opts = f"driver=nbd,host=127.0.0.1,port={s.port},export=disk,tls-creds=tls0"
    p = run("qemu-img", "info", "--object", obj, "--image-opts", opts)
    assert "4 MiB" in p.stdout
    run(
        "qemu-io",
        "--object",
        obj,
        "--image-opts",
        opts,
        "-c",
        "write -P 0x61 0 1M",
        "-c",
        "read -P 0x61 0 1M",
    )
    obj_b = f"tls-creds-x509,id=tls0,dir={clients['host-b']},endpoint=client"
    p = run("qemu-img", "info", "--object", obj_b, "--image-opts", opts, check=False)
    assert p.returncode != 0  # host-b is not allowed "disk"


def test_libnbd_tls_data_roundtrip(serve, pki):
    # Bulk data both ways over TLS, pipelined.
    d, clients = pki
    s = serve(size=8 * MiB, allow=allow_host_a, tls_context=tls.server_context(d))
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(clients["host-a"])
    h.connect_uri(s.uri("disk", "nbds"))
    assert h.get_tls_negotiated()
    data = os.urandom(5 * MiB)
    h.pwrite(data, 123)
    assert h.pread(len(data), 123) == data
    h.shutdown()


def test_require_tls_refuses_plain_clients(serve, pki):
    # FORCEDTLS: every option but STARTTLS/ABORT gets ERR_TLS_REQD; plain
    # clients cannot list or open anything.
    d, clients = pki
    s = serve(size=MiB, tls_context=tls.server_context(d), require_tls=True)
    p = run("nbdinfo", "--list", s.uri("disk"), check=False)
    assert p.returncode != 0
    p = run("qemu-img", "info", s.uri("disk"), check=False)
    assert p.returncode != 0
    c = RawClient(s.port)
    c.greeting()
    for opt in (P.OPT_LIST, P.OPT_STRUCTURED_REPLY, 77):
        c.option(opt)
        assert c.reply()[1] == P.REP_ERR_TLS_REQD
    c.option(P.OPT_GO, b"\0\0\0\4disk\0\0")
    assert c.reply()[1] == P.REP_ERR_TLS_REQD
    c.option(P.OPT_EXPORT_NAME, b"disk")
    assert c.closed_by_server()
    run("nbdinfo", "--list", s.uri("disk", "nbds", f"tls-certificates={clients['host-a']}"))


def test_untrusted_client_cert_is_rejected(serve, pki, workdir):
    # A certificate from another CA fails the TLS handshake.
    d, _ = pki
    rogue = os.path.join(workdir, "rogue")
    tls.init_tls_dir(rogue)
    tls.create_client_cert(rogue, "host-a", os.path.join(rogue, "c"))
    # trust our server CA but present the rogue client cert
    import shutil

    shutil.copy(os.path.join(d, "ca-cert.pem"), os.path.join(rogue, "c", "ca-cert.pem"))
    s = serve(size=MiB, tls_context=tls.server_context(d), require_tls=True)
    p = run(
        "nbdinfo",
        "--list",
        s.uri("disk", "nbds", f"tls-certificates={os.path.join(rogue, 'c')}"),
        check=False,
    )
    assert p.returncode != 0


def test_revoke_cuts_a_tls_connection(serve, pki):
    # revoke() also cleanly ends a TLS session; other TLS sessions go on.
    d, clients = pki
    s = serve(size=MiB, allow=allow_host_a, tls_context=tls.server_context(d))
    hs = {}
    for name in ("disk", "other"):
        h = nbd.NBD()
        h.set_tls(nbd.TLS_REQUIRE)
        h.set_tls_certificates(clients["host-a"])
        h.connect_uri(s.uri(name, "nbds"))
        h.pwrite(b"t" * 512, 0)
        hs[name] = h
    assert s.server.revoke("disk") == 1
    with pytest.raises(nbd.Error):
        hs["disk"].pread(512, 0)
    assert hs["other"].pread(512, 0) == b"t" * 512
    hs["other"].shutdown()
