#!/usr/bin/env python3
"""Which concurrency model for the NBD server: threads or asyncio?

Runs fio (--ioengine=nbd) against two servers over the same file device:

  threads   coppice.nbd.server.NBDServer (one blocking thread per
            connection, requests read and answered in batches)
  asyncio   a minimal asyncio.Protocol NBD server written here for the
            measurement only (GO + READ/WRITE/FLUSH, simple replies, device
            calls inline in data_received, replies with writelines): the
            best case for asyncio, since it skips executor hand-offs

for 4K randread QD32 and 1M seq read QD8, with one and with four fio jobs
(connections). This probe is not a server anyone should use.

    .venv/bin/python bench/nbd_asyncio_probe.py [--runtime 5] [--size-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.nbd_vs_qemu_nbd import fill, fio, free_port, stop, wait_port  # noqa: E402
from coppice.nbd import protocol as P  # noqa: E402


class _AsyncNBD(asyncio.Protocol):
    def __init__(self, make_device):
        self.make_device = make_device
        self.buf = bytearray()
        self.phase = "flags"
        self.dev = None

    def connection_made(self, transport):
        self.t = transport
        transport.write(P.SERVER_GREETING.pack(P.NBDMAGIC, P.IHAVEOPT, P.FLAG_FIXED_NEWSTYLE))

    def data_received(self, data):
        self.buf += data
        buf = self.buf
        pos = 0
        out = []
        while True:
            if self.phase == "flags":
                if len(buf) - pos < 4:
                    break
                pos += 4
                self.phase = "opts"
            elif self.phase == "opts":
                if len(buf) - pos < 16:
                    break
                _m, opt, ln = P.OPTION_HEADER.unpack_from(buf, pos)
                if len(buf) - pos < 16 + ln:
                    break
                pos += 16 + ln
                if opt == P.OPT_GO:
                    self.dev = self.make_device()
                    info = P.INFO_EXPORT_STRUCT.pack(
                        P.INFO_EXPORT, self.dev.size, P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH
                    )
                    out.append(P.OPTION_REPLY.pack(P.OPT_REPLY_MAGIC, opt, P.REP_INFO, len(info)) + info)
                    out.append(P.OPTION_REPLY.pack(P.OPT_REPLY_MAGIC, opt, P.REP_ACK, 0))
                    self.phase = "tx"
                else:
                    out.append(P.OPTION_REPLY.pack(P.OPT_REPLY_MAGIC, opt, P.REP_ERR_UNSUP, 0))
            else:
                if len(buf) - pos < 28:
                    break
                _m, _f, cmd, handle, off, ln = P.REQUEST.unpack_from(buf, pos)
                if cmd == P.CMD_WRITE:
                    if len(buf) - pos < 28 + ln:
                        break
                    self.dev.pwrite(off, memoryview(buf)[pos + 28 : pos + 28 + ln])
                    pos += 28 + ln
                    out.append(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, handle))
                    continue
                pos += 28
                if cmd == P.CMD_READ:
                    out.append(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, handle))
                    out.append(self.dev.pread(off, ln))
                elif cmd == P.CMD_FLUSH:
                    self.dev.flush()
                    out.append(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, handle))
                elif cmd == P.CMD_DISC:
                    self.t.close()
                    return
                else:
                    out.append(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, P.EINVAL, handle))
        del buf[:pos]
        if out:
            self.t.writelines(out)

    def connection_lost(self, exc):
        if self.dev:
            self.dev.close()


def serve_asyncio(port: int, path: str) -> None:
    from tests.nbd.file_device import FileDevice

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: _AsyncNBD(lambda: FileDevice(path)), "127.0.0.1", port)
        stop_ev = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop_ev.set)
        async with srv:
            await stop_ev.wait()

    asyncio.run(main())


def serve_threads(port: int, path: str) -> None:
    from coppice.nbd.server import NBDServer
    from tests.nbd.file_device import DictResolver, FileDevice

    server = NBDServer(DictResolver({"disk": (lambda: FileDevice(path), "")}), port=port)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        (serve_asyncio if a.serve == "asyncio" else serve_threads)(a.port, a.path)
        return
    work = tempfile.mkdtemp(prefix="coppice-nbd-probe-", dir="/var/tmp")
    try:
        path = os.path.join(work, "disk.raw")
        fill(path, a.size_mib)
        rows = []
        for model in ("threads", "asyncio"):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", model, "--port", str(port), "--path", path]
            )
            try:
                wait_port(port, proc)
                uri = f"nbd://127.0.0.1:{port}/disk"
                for label, rw, bs, depth, jobs in (
                    ("4K randread QD32", "randread", "4k", 32, 1),
                    ("4K randread QD32 x4 conns", "randread", "4k", 32, 4),
                    ("1M seq read QD8", "read", "1M", 8, 1),
                ):
                    bw, iops = (
                        fio(uri, rw, bs, depth, a.size_mib, a.runtime)
                        if jobs == 1
                        else _fio_jobs(uri, rw, bs, depth, a.size_mib, a.runtime, jobs)
                    )
                    rows.append((model, label, bw, iops))
                    print(f"{model:8s} {label:28s} {bw:9.1f} MiB/s {iops:10.0f} IOPS", flush=True)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fio_jobs(uri, rw, bs, depth, size_mib, runtime, jobs):
    import json

    cmd = [
        "fio",
        "--name=probe",
        "--ioengine=nbd",
        f"--uri={uri}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--iodepth={depth}",
        f"--size={size_mib}M",
        f"--runtime={runtime}",
        "--time_based",
        f"--numjobs={jobs}",
        "--group_reporting",
        "--output-format=json",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    j = json.loads(p.stdout[p.stdout.index("{") :])["jobs"][0]
    r = j["read"] if "read" in rw else j["write"]
    return r["bw"] / 1024.0, r["iops"]


if __name__ == "__main__":
    main()
