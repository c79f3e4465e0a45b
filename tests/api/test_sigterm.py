"""SIGTERM while an NBD client writes and flushes: no flushed write is lost."""

from __future__ import annotations

import os
import signal
import struct
import threading

import pytest

from coppice.nbd import protocol as P
from tests.api.conftest import Served
from tests.nbd.rawclient import RawClient

BLOCK = 4096
NBLOCKS = 2048  # an 8 MiB LUN, overwritten round and round


def _payload(i: int, seq: int) -> bytes:
    return struct.pack(">QQ", i, seq) * (BLOCK // 16)


@pytest.mark.backends("native", "rbd")
def test_sigterm_during_write_stream_loses_no_flushed_data(pool_path):
    s = Served(pool_path)
    s.unix.post("/volumes", json={"name": "v", "size": "1g"}).raise_for_status()
    s.unix.post("/luns", json={"path": "/vol/v/lun0", "size": NBLOCKS * BLOCK}).raise_for_status()
    c = RawClient(unix_path=os.path.join(pool_path, "nbd.sock"))
    c.greeting()
    size, _ = c.go("/vol/v/lun0")
    assert size == NBLOCKS * BLOCK

    flushed: dict[int, int] = {}  # block -> seq, as of the last acknowledged FLUSH
    pending: dict[int, int] = {}
    stop = threading.Event()
    going = threading.Event()  # enough flushed blocks that losing any would show
    errors = []  # protocol errors seen by the client: must stay empty

    def writer():
        seq = 0
        try:
            while not stop.is_set():
                for _ in range(16):  # 16 writes, then a flush
                    seq += 1
                    i = (seq * 7919) % NBLOCKS
                    c.request(P.CMD_WRITE, i * BLOCK, BLOCK, data=_payload(i, seq))
                    err, _, _ = c.simple_reply()
                    if err:
                        return
                    pending[i] = seq
                c.request(P.CMD_FLUSH)
                err, _, _ = c.simple_reply()
                if err:
                    return
                flushed.update(pending)
                pending.clear()
                if len(flushed) > 50:
                    going.set()
        except (EOFError, OSError):  # the server went away mid-request: expected at SIGTERM
            pass
        except AssertionError as e:  # a malformed reply: the server broke the protocol
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    assert going.wait(60) and t.is_alive(), "the write stream did not get going"
    s.proc.send_signal(signal.SIGTERM)
    rc = s.proc.wait(30)
    stop.set()
    t.join(10)
    c.close()
    s.stop()
    assert rc == 0, s.stderr
    assert not errors, f"the client saw protocol errors: {errors[:3]}"

    from coppice.filer import Filer

    f = Filer.open(pool_path)
    try:
        dev = f.open_lun("/vol/v/lun0")
        lost = [
            i
            for i, seq in flushed.items()
            if struct.unpack(">QQ", bytes(dev.pread(i * BLOCK, 16))) < (i, seq)
        ]
        dev.close()
    finally:
        f.close()
    assert len(flushed) > 50
    assert not lost, f"{len(lost)} flushed blocks lost, e.g. {lost[:5]}"
