"""The filer's LUNs served by the real NBD server, checked with libnbd:
igroup access by IP network, read-only snapshot exports, ENOSPC at the
volume's size, and revocation on unmap."""

import pytest

try:
    import nbd
except ImportError:  # a required part: fail, never skip
    raise ImportError(
        "libnbd's Python binding is missing: run scripts/install.sh (Debian package python3-libnbd)"
    ) from None

from coppice.nbd.server import NBDServer

pytestmark = pytest.mark.backends("native", "rbd")


@pytest.fixture
def served(runbook):
    runbook.igroup_create("local", ["127.0.0.0/8"])
    srv = NBDServer(runbook.resolver(), host="127.0.0.1", port=0)
    srv.start()
    yield runbook, srv
    srv.shutdown(timeout=5)


def connect(srv, name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_tcp("127.0.0.1", str(srv.address[1]))
    return h


def test_mapped_lun_is_served_and_snapshot_is_read_only(served):
    f, srv = served
    with pytest.raises(nbd.Error):
        connect(srv, "/vol/fvol_master/lun0")  # not mapped to 'local' yet
    f.lun_map("/vol/fvol_master/lun0", "local")
    h = connect(srv, "/vol/fvol_master/lun0")
    assert h.get_size() == 64 << 20 and h.pread(6, 0) == b"golden"
    h.pwrite(b"hello!", 0)
    h.flush()
    h.shutdown()
    s = connect(srv, "/vol/fvol_master/.snapshot/clone_base_snapshot/lun0")
    assert s.is_read_only() and s.pread(6, 0) == b"golden"
    s.shutdown()


@pytest.mark.backends("native")  # engine-only semantics; tests/rbd asserts the rbd side
def test_write_past_volume_size_is_enospc(served):
    f, srv = served
    f.vol_create("small", "1m", snap_reserve=0)
    f.lun_create("/vol/small/l", "8m")
    f.lun_map("/vol/small/l", "local")
    h = connect(srv, "/vol/small/l")
    h.pwrite(b"x" * (1 << 20), 0)
    with pytest.raises(nbd.Error) as ei:
        h.pwrite(b"y" * 4096, 2 << 20)
    assert "No space left on device" in str(ei.value)
    assert h.pread(4096, 2 << 20) == bytes(4096) and h.pread(4, 0) == b"xxxx"
    h.shutdown()


def test_unmap_cuts_the_connection(served):
    f, srv = served
    f.lun_map("/vol/fvol_master/lun0", "local")
    h = connect(srv, "/vol/fvol_master/lun0")
    f.lun_unmap("/vol/fvol_master/lun0", "local")
    with pytest.raises(nbd.Error):
        h.pread(512, 0)
    with pytest.raises(nbd.Error):
        connect(srv, "/vol/fvol_master/lun0")
