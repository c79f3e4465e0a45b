"""The RBD backend: a pool whose LUN data lives in Ceph RBD images.

Layout (readable with ``rbd ls POOL``): every LUN is one image in the Ceph
pool's default namespace, named ``coppice.VOLUME.LUN`` (``image_name``),
each volume snapshot an RBD snapshot of the same name on every LUN image of
the volume. Volume names hold no '.', so the first '.' after the prefix ends
the volume and the rest is the LUN (which may hold '.' and '-'). The default
namespace, not one namespace per volume, because libvirt (9.0, and upstream
today) names an RBD disk only as ``pool/image``: a namespace would make the
images unreachable as libvirt disks (``vm provision --disk-path rbd``). The
pool directory keeps the control plane (the engine's SQLite database with
volumes, snapshots, clones, LUN records and attributes, igroups, maps,
options, schedules, small files); a LUN record carries its image's RBD id
(``rbd_id``), by which every image is opened, so the names serve people and
libvirt and renames (``lun move``, ``vol rename``) rename the images.

Contract:

* LUN = RBD image with the layering and deep-flatten features, thin. A
  LUN or volume renamed is its images renamed; a LUN deleted while a
  snapshot still holds it keeps its image under the hidden name
  ``coppice.~deleted.ID`` until the last such snapshot goes; a volume
  destroyed has its images hidden at once and removed after the commit.
* Volume snapshot = one instant across the volume's LUNs by quiescing:
  Coppice's own writers to the volume (every handle ``open_lun`` gave out)
  are held and flushed, then every image is snapshotted, then writers
  resume. A client that writes to the images directly (bypassing Coppice)
  gets a crash-consistent snapshot per image, not across images.
* Volume clone = an RBD clone (format 2, so no protection) of each LUN
  image from the snapshot, named for the clone volume: O(LUNs), no data
  copied, nothing else made in Ceph. ``split_steps`` flattens each clone
  image (RBD's own progress is reported); the snapshot then has no children.
* A snapshot is busy while it has clones: the control plane's and the RBD
  children of its images (a child Coppice does not know is named
  ``rbd:POOL/IMAGE``).
* ``restore_snapshot`` = RBD rollback of every image (it writes the whole
  image: its cost is the volume's LUN size, ``restore_cost`` says so).
* Thin only (a thick guarantee is ``ThinOnly``), no dedup; ``usage`` and
  ``space`` come from RBD's allocation maps (``diff_iterate``).
* Transactions: images, snapshots and clones are made at once and undone if
  the filer's transaction rolls back; removals of images and snapshots
  happen after the commit, so a refused command never loses
  data. A crash in between leaves at worst an image no LUN names, which
  ``fsck`` reports.
* One owner: the object ``coppice.owner`` of the Ceph pool records the
  Coppice pool that claimed it at creation (uuid, host, directory), and an
  exclusive RADOS lock on it is held while the pool is open (the holder's
  host and pid in its ``holder`` xattr). Another Coppice pool, or the same
  pool open on another host, is refused with ``CephPoolOwned`` naming the
  owner; the same pool on the same host (whose file lock proves the previous
  holder gone, e.g. after ``kill -9``) breaks its own stale lock. To hand a
  Ceph pool to another Coppice pool, empty it and `rados -p POOL rm
  coppice.owner`.
"""

from __future__ import annotations

import errno as _errno
import json
import os
import queue
import socket
import struct
import subprocess
import threading
import weakref
from contextlib import contextmanager

from ..engine.pool import SpaceInfo
from ..errors import Busy, CoppiceError, InvalidArgument, ReadOnly
from .base import Backend

OWNER_OBJECT = "coppice.owner"
LOCK_NAME = "coppice"
FEATURES_DOC = "layering, deep-flatten"
IMAGE_PREFIX = "coppice"
# '~' is in no volume name, so a hidden image never looks like a LUN's
HIDDEN_PREFIX = IMAGE_PREFIX + ".~deleted."


def image_name(volume: str, lun: str) -> str:
    """The RBD image of LUN ``lun`` of volume ``volume``: ``coppice.VOLUME.LUN``."""
    return f"{IMAGE_PREFIX}.{volume}.{lun}"


def _split_top(text: str, seps: str) -> list[str]:
    """text split at the separators outside brackets (IPv6 addresses, address vectors)."""
    parts, cur, depth = [], "", 0
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch in seps and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in parts + [cur] if p]


def mon_hosts(mon_host: str) -> list[tuple[str, int | None]]:
    """(host, port) per monitor from a ceph.conf ``mon_host`` value, as
    libvirt's ``<host name= port=>`` takes them. Accepts what Ceph does:
    ``10.0.0.1``, ``mon1:6789``, ``v2:10.0.0.1:3300``, ``[::1]:6789``,
    address vectors ``[v2:h:3300,v1:h:6789]`` (the v2 address is taken),
    nonces (``/0``), separated by ',', ';' or spaces."""
    out: list[tuple[str, int | None]] = []
    for item in _split_top(mon_host, ",; \t"):
        if item.startswith("[") and item[1:4] in ("v1:", "v2:", "any"):
            addrs = sorted(_split_top(item[1:-1], ","), key=lambda a: not a.startswith("v2:"))
            item = addrs[0] if addrs else ""
        for kind in ("v1:", "v2:", "any:"):
            item = item.removeprefix(kind)
        item = item.split("/", 1)[0]
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif item.count(":") == 1:
            host, port = item.split(":")
        else:
            host, port = item, ""  # a bare IPv6 address or a name
        hp = (host, int(port) if port.isdigit() else None)
        if host and hp not in out:
            out.append(hp)
    return out


class CephUnavailable(CoppiceError):
    """Cannot use Ceph pool {pool} with {conf}: {why}. Check that the cluster
    is up (`ceph -s -c {conf}`) and the pool exists (`ceph osd pool ls`)."""

    exit_code = 16
    http_status = 503


class CephPoolOwned(Busy):
    """Ceph pool {pool} is owned by another Coppice pool: {owner}. Use that
    pool, or give this one its own Ceph pool (--ceph-pool)."""


class ImageNameTaken(Busy):
    """RBD image {pool}/{image} already exists but belongs to no LUN of this
    Coppice pool; remove it (`rbd rm {pool}/{image}`) or choose another {what}
    name."""


def _rbd():
    try:
        import rados
        import rbd
    except ImportError as e:  # pragma: no cover - the install script installs them
        raise CephUnavailable(
            pool="?",
            conf="?",
            why=f"the Python bindings are missing ({e}); install python3-rados and python3-rbd "
            "and use a Python 3.11 venv with system site packages",
        ) from None
    return rados, rbd


class _Quiesce:
    """Per-volume gate: I/O takes it shared, a snapshot exclusively, so no
    write Coppice acknowledges lands between two LUNs' snapshots."""

    def __init__(self):
        self.cond = threading.Condition()
        self.active = 0
        self.frozen = False

    @contextmanager
    def io(self):
        with self.cond:
            while self.frozen:
                self.cond.wait()
            self.active += 1
        try:
            yield
        finally:
            with self.cond:
                self.active -= 1
                if not self.active:
                    self.cond.notify_all()

    @contextmanager
    def freeze(self):
        with self.cond:
            while self.frozen:
                self.cond.wait()
            self.frozen = True
            while self.active:
                self.cond.wait()
        try:
            yield
        finally:
            with self.cond:
                self.frozen = False
                self.cond.notify_all()


MAX_INFLIGHT = 64  # queued writes per handle
MAX_INFLIGHT_BYTES = 64 << 20  # and their bytes (one larger write may go alone)


class RbdWriteFailed(CoppiceError):
    """A write to {name} failed in Ceph after it was queued ({why}); the data
    since the last successful flush may be lost. Check `ceph -s`."""

    errno = _errno.EIO


class _WriteQueue:
    """The queued aio writes of one handle, their ranges, and the first error
    among them. Referenced by librbd's completion callbacks instead of the
    handle. No lock is held across ``aio_write``: librbd may block in it
    until one of its threads has run a completion, which takes this lock."""

    def __init__(self):
        self.cond = threading.Condition()
        self.count = 0
        self.nbytes = 0
        self.ranges: dict[int, tuple[int, int]] = {}  # ticket -> (offset, end) in flight
        self._ticket = 0
        self.error: str | None = None

    def submit(self, image, data: bytes, offset: int) -> None:
        n = len(data)
        end = offset + n
        with self.cond:
            # an overlapping write still queued goes first: the later write
            # must win whatever order librbd would complete them in
            while (
                self.count >= MAX_INFLIGHT
                or (self.nbytes and self.nbytes + n > MAX_INFLIGHT_BYTES)
                or self._overlaps(offset, end)
            ):
                self.cond.wait()
            self.count += 1
            self.nbytes += n
            self._ticket += 1
            ticket = self._ticket
            self.ranges[ticket] = (offset, offset + n)
        try:
            # the callback keeps the buffer alive until librbd is done with it
            image.aio_write(data, offset, lambda comp, _keep=data: self.done(comp, ticket))
        except BaseException:
            with self.cond:
                self._retire(ticket)
            raise

    def _retire(self, ticket: int) -> None:
        offset, end = self.ranges.pop(ticket)
        self.count -= 1
        self.nbytes -= end - offset
        self.cond.notify_all()

    def done(self, comp, ticket: int) -> None:
        rv = comp.get_return_value()
        with self.cond:
            self._retire(ticket)
            if rv < 0 and self.error is None:
                self.error = os.strerror(-rv)

    def drain(self) -> None:
        with self.cond:
            while self.count:
                self.cond.wait()

    def _overlaps(self, offset: int, end: int) -> bool:
        return bool(self.count) and any(o < end and offset < e for o, e in self.ranges.values())

    def wait_overlapping(self, offset: int, length: int) -> None:
        """Wait until no queued write overlaps [offset, offset+length): a read
        then sees every write acknowledged before it (librbd does not promise
        to order a read after an overlapping write still in flight)."""
        end = offset + length
        with self.cond:
            while self._overlaps(offset, end):
                self.cond.wait()

    def take_error(self) -> str | None:
        with self.cond:
            err, self.error = self.error, None
            return err


class RbdLun:
    """An open LUN image: the BlockDevice calls ``coppice.nbd`` makes.

    Writes are pipelined: ``pwrite`` copies the data, queues a librbd aio
    write (at most MAX_INFLIGHT writes and MAX_INFLIGHT_BYTES at once) and
    returns, as a write-back disk acknowledges a write before it is
    durable; FUA, ``flush``, ``trim`` and ``zero`` first wait for every
    queued write, and a read or write for the queued writes it overlaps,
    so a read sees every acknowledged write, of two overlapping writes the
    later one wins, and a flush makes them durable (librbd's flush). A
    queued write that fails makes the next flush (or FUA write) fail with
    EIO, as a failed write-back does. Reads are ``pread`` or, for the NBD
    server's concurrent path, ``start_read`` (a librbd aio read;
    ``nbd.blockdev.AsyncReads``). Multi-conn is off: one connection's
    flush does not cover another connection's image handle."""

    can_trim = True
    can_zero = True
    can_fua = True
    can_multi_conn = False

    def __init__(self, backend, vid, oid, image, read_only, name):
        self.backend = backend
        self.oid = oid
        self.name = name
        self.image = image
        self.read_only = read_only
        self.block_size = backend.pool.block_size
        self._gate = backend._gate(vid)
        self._size = image.size()
        self._closed = False
        # close() and a snapshot's flush of this handle never overlap: a
        # connection can end (and close its handle) while a snapshot of the
        # volume is being taken
        self._close_lock = threading.Lock()
        # librbd runs completion callbacks on its own threads; they must hold
        # no reference to this handle, or dropping the last one there would
        # close the image inside librbd's thread and deadlock it
        self._q = _WriteQueue()

    @property
    def size(self) -> int:
        o = self.backend.pool.objects.get(self.oid)
        return o.size if o is not None else self._size

    def _range(self, what, offset, length):
        size = self.size
        if offset < 0 or length < 0 or offset + length > size:
            raise InvalidArgument(
                detail=f"{what}: range {offset}+{length} is outside {self.name} (size {size})"
            )

    def _writable(self):
        if self.read_only:
            raise ReadOnly(detail=f"{self.name} is a snapshot LUN and read-only")

    def drain(self) -> None:
        """Wait until every queued write has completed."""
        self._q.drain()

    def _raise_error(self) -> None:
        err = self._q.take_error()
        if err:
            raise RbdWriteFailed(name=self.name, why=err)

    def pread(self, offset, length):
        self._range("read", offset, length)
        if not length:
            return b""
        self._q.wait_overlapping(offset, length)
        return self.image.read(offset, length)

    def start_read(self, offset, length, done):
        self._range("read", offset, length)
        if not length:
            done(b"", None)
            return
        self._q.wait_overlapping(offset, length)
        name = self.name  # the callback must not hold the handle (see __init__)

        def complete(comp, data):
            rv = comp.get_return_value()
            if rv < 0:
                # an OSError carries librbd's errno to the NBD reply as it is
                why = f"read of {name} at {offset}+{length} failed in Ceph (check `ceph -s`)"
                done(None, OSError(-rv, why))
            else:
                done(data, None)

        self.image.aio_read(offset, length, complete)

    def pwrite(self, offset, data, fua=False):
        self._writable()
        self._range("write", offset, len(data))
        data = bytes(data)
        with self._gate.io():
            self._q.submit(self.image, data, offset)
            if fua:
                self.flush()

    def trim(self, offset, length, fua=False):
        self._writable()
        self._range("trim", offset, length)
        with self._gate.io():
            self.drain()
            if length:
                self.image.discard(offset, length)
            if fua:
                self.flush()

    def zero(self, offset, length, may_trim=True, fua=False):
        self._writable()
        self._range("zero", offset, length)
        with self._gate.io():
            self.drain()
            if length:
                self.image.write_zeroes(offset, length)
            if fua:
                self.flush()

    def flush(self):
        if not self.read_only:
            self.drain()
            self.image.flush()
            self._raise_error()

    def extents(self, offset, length):
        """(offset, length, flags) runs: 0 = data, 3 = hole reading zeros,
        from RBD's allocation map (the parent's too, for a clone)."""
        self._range("extents", offset, length)
        alloc = _allocated(self.image, offset, length, include_parent=True)
        out, pos = [], offset
        for s, n in alloc:
            if s > pos:
                out.append((pos, s - pos, 3))
            out.append((s, n, 0))
            pos = s + n
        if pos < offset + length:
            out.append((pos, offset + length - pos, 3))
        return out

    # the write budget's questions: RBD is thin with no per-block budget
    def unallocated_blocks(self, offset, length):
        return 0

    def snapshot_held_blocks(self, offset, length):
        return 0

    def __del__(self):
        # a handle dropped without close(): finish here, in the dropping thread
        try:
            self.close()
        except Exception:
            pass

    def flush_open(self) -> None:
        """Drain and flush, unless the handle is closed: close() flushes
        everything first, so a closed handle has nothing left to flush."""
        with self._close_lock:
            if not self._closed:
                self.drain()
                self.image.flush()

    def close(self):
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.drain()
                self.image.flush()
            except Exception:
                pass
            self.image.close()
        self.backend._handles.discard(self)


def _allocated(image, offset, length, include_parent=True, from_snapshot=None) -> list[tuple[int, int]]:
    """Merged allocated (offset, length) runs of ``image`` in the range."""
    runs: list[list[int]] = []

    def cb(off, ln, exists):
        if not exists:
            return 0
        s, e = max(off, offset), min(off + ln, offset + length)
        if e <= s:
            return 0
        if runs and runs[-1][0] + runs[-1][1] >= s:
            runs[-1][1] = max(runs[-1][0] + runs[-1][1], e) - runs[-1][0]
        else:
            runs.append([s, e - s])
        return 0

    if length:
        image.diff_iterate(
            offset, length, from_snapshot, cb, include_parent=include_parent, whole_object=False
        )
    runs.sort()
    return [(s, n) for s, n in runs]


def _bytes(runs) -> int:
    return sum(n for _, n in runs)


class RbdBackend(Backend):
    kind = "rbd"
    label = "Ceph RBD"
    thin_only = True
    dedup = False
    block_budget = False

    def __init__(self, pool, holder=None, creating=False, ceph_conf=None, ceph_pool=None):
        super().__init__(pool)
        rados, rbd = _rbd()
        self.rados_mod, self.rbd_mod = rados, rbd
        self.conf = os.path.abspath(ceph_conf) if ceph_conf else None
        self.ceph_pool = ceph_pool or "rbd"
        if not self.conf or not os.path.isfile(self.conf):
            raise CephUnavailable(
                pool=self.ceph_pool,
                conf=ceph_conf,
                why="the ceph.conf file does not exist (give --ceph-conf)",
            )
        self.r = rbd.RBD()
        self._undo: list = []
        self._after: list = []
        self._gates: dict[int, _Quiesce] = {}
        self._gates_lock = threading.Lock()
        self._handles: weakref.WeakSet = weakref.WeakSet()
        self.cluster = rados.Rados(conffile=self.conf)
        try:
            self.cluster.connect(timeout=15)
            if not self.cluster.pool_exists(self.ceph_pool):
                raise CephUnavailable(pool=self.ceph_pool, conf=self.conf, why="the pool does not exist")
            self.ioctx = self.cluster.open_ioctx(self.ceph_pool)
            if creating:
                # clone v2: clones of unprotected snapshots, parents deleted while children live
                self._mon({"prefix": "osd set-require-min-compat-client", "version": "mimic"})
            self._lock_owner(holder, creating)
        except self.rados_mod.Error as e:
            self.cluster.shutdown()
            raise CephUnavailable(pool=self.ceph_pool, conf=self.conf, why=str(e)) from None
        except BaseException:
            self.cluster.shutdown()
            raise

    # ---- cluster plumbing ------------------------------------------------------------
    def _mon(self, cmd: dict) -> str:
        ret, out, err = self.cluster.mon_command(json.dumps(cmd), b"", timeout=30)
        if ret != 0:
            raise CephUnavailable(pool=self.ceph_pool, conf=self.conf, why=f"{cmd['prefix']}: {err}")
        return out.decode() if isinstance(out, bytes) else out

    def _owner_record(self, holder) -> dict:
        return {
            "pool_dir": self.pool.path,
            "pool_uuid": self.pool.uuid,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "holder": holder or "coppice",
        }

    def _lock_owner(self, holder, creating) -> None:
        """Claim the Ceph pool for this Coppice pool (the content of
        ``coppice.owner``, kept for good), then hold its exclusive lock while
        open (the holder in its ``holder`` xattr)."""
        me = self._owner_record(holder)
        claim = self._read_owner()
        if claim and claim.get("pool_uuid") != me["pool_uuid"]:
            raise CephPoolOwned(pool=self.ceph_pool, owner=self._describe_owner(claim))
        if (
            not claim
            and not creating
            and any(n.startswith(IMAGE_PREFIX + ".") for n in self.r.list(self.ioctx))
        ):
            raise CephUnavailable(
                pool=self.ceph_pool,
                conf=self.conf,
                why="the pool's Coppice claim (object coppice.owner) is gone but coppice.* images remain",
            )
        self._cookie = f"{me['pool_uuid']}.{os.getpid()}.{id(self)}"
        for attempt in range(2):
            try:
                self.ioctx.lock_exclusive(OWNER_OBJECT, LOCK_NAME, self._cookie, desc=me["holder"][:100])
                break
            except self.rados_mod.ObjectBusy:
                other = self._read_holder()
                if attempt == 0 and other.get("host") == me["host"]:
                    # the same pool on the same host: this directory's file lock
                    # is ours, so that holder is gone (e.g. killed)
                    self._break_stale_lock()
                    continue
                raise CephPoolOwned(pool=self.ceph_pool, owner=self._describe_owner(other)) from None
        if not claim:
            claim_rec = {k: me[k] for k in ("pool_dir", "pool_uuid", "host")} | {"holder": "coppice pool"}
            self.ioctx.write_full(OWNER_OBJECT, json.dumps(claim_rec).encode())
        self.ioctx.set_xattr(OWNER_OBJECT, "holder", json.dumps(me).encode())

    def _read_owner(self) -> dict:
        try:
            return json.loads(self.ioctx.read(OWNER_OBJECT, 4096) or b"{}")
        except (ValueError, self.rados_mod.ObjectNotFound):
            return {}

    def _read_holder(self) -> dict:
        try:
            return json.loads(self.ioctx.get_xattr(OWNER_OBJECT, "holder") or b"{}")
        except (ValueError, self.rados_mod.Error):
            return {}

    @staticmethod
    def _describe_owner(o: dict) -> str:
        if not o:
            return "an unknown holder"
        pid = f" (pid {o['pid']})" if o.get("pid") and "pid" not in str(o.get("holder")) else ""
        return (
            f"{o.get('holder', 'coppice')}{pid} on host {o.get('host')}, pool directory {o.get('pool_dir')}"
        )

    def _break_stale_lock(self) -> None:
        base = ["rados", "-c", self.conf, "-p", self.ceph_pool]
        info = subprocess.run(
            base + ["lock", "info", OWNER_OBJECT, LOCK_NAME, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        try:
            lockers = json.loads(info.stdout).get("lockers", [])
        except ValueError:
            lockers = []
        for lk in lockers:
            subprocess.run(
                base + ["lock", "break", OWNER_OBJECT, LOCK_NAME, lk["name"], "--lock-cookie", lk["cookie"]],
                capture_output=True,
                timeout=30,
            )

    def close(self) -> None:
        for h in list(self._handles):
            try:
                h.close()
            except Exception:
                pass
        try:
            self.ioctx.unlock(OWNER_OBJECT, LOCK_NAME, self._cookie)
        except Exception:
            pass
        self.ioctx.close()
        self.cluster.shutdown()

    def describe(self) -> dict:
        return {"backend": "rbd", "ceph_conf": self.conf, "ceph_pool": self.ceph_pool}

    # ---- names -------------------------------------------------------------------------
    def _image(self, rbd_id: str, snapshot=None, read_only=False):
        return self.rbd_mod.Image(self.ioctx, image_id=rbd_id, snapshot=snapshot, read_only=read_only)

    # An image's name from its id and its id from its name: one OSD call each on
    # the records RBD format 2 keeps for that (``rbd_directory``, ``rbd_id.NAME``),
    # instead of opening the image (five calls, ~4 ms); opening stays the fallback.
    def _cls_str(self, obj: str, method: str, arg: str | None = None) -> str | None:
        data = b"" if arg is None else struct.pack("<I", len(arg.encode())) + arg.encode()
        try:
            ret, out = self.ioctx.execute(obj, "rbd", method, data)
        except self.rados_mod.Error:
            return None
        if ret < 0 or len(out) < 4:
            return None
        n = struct.unpack_from("<I", out)[0]
        return out[4 : 4 + n].decode() if len(out) == 4 + n else None

    def _image_name(self, rbd_id: str) -> str:
        name = self._cls_str("rbd_directory", "dir_get_name", rbd_id)
        if name is None:
            with self._image(rbd_id, read_only=True) as img:
                name = img.get_name()
        return name

    def _image_id(self, name: str) -> str:
        rbd_id = self._cls_str(f"rbd_id.{name}", "get_id")
        if rbd_id is None:
            with self.rbd_mod.Image(self.ioctx, name, read_only=True) as img:
                rbd_id = img.id()
        return rbd_id

    def _gate(self, vid: int) -> _Quiesce:
        with self._gates_lock:
            g = self._gates.get(vid)
            if g is None:
                g = self._gates[vid] = _Quiesce()
            return g

    def _luns(self, vol, snapshot=None):
        return [o for o in self.pool.list_objects(vol, snapshot) if o.kind == "lun"]

    def _referenced_ids(self, vol) -> tuple[set, set]:
        live = {o.meta.get("rbd_id") for o in self._luns(vol)}
        held = set()
        for s in self.pool.list_snapshots(vol):
            held |= {o.meta.get("rbd_id") for o in self._luns(vol, s.name)}
        return live - {None}, held - {None}

    def _volume_of_ids(self) -> dict[str, str]:
        """rbd id -> volume, for every image a LUN (live or in a snapshot) names."""
        out = {}
        for v in self.pool.list_volumes():
            live, held = self._referenced_ids(v.name)
            out.update(dict.fromkeys(live | held, v.name))
        return out

    def direct_disk_access(self) -> dict:
        """What a QEMU on any host needs to open a LUN's image straight from
        Ceph: the pool, the monitors (from the ceph.conf's mon_host), the
        cephx user (None when the cluster runs without auth) and the image
        name rule (``image_name``)."""
        auth = (self.cluster.conf_get("auth_client_required") or "cephx").replace(",", " ").split()
        user = None
        if any(a != "none" for a in auth):
            user = (getattr(self.cluster, "rados_id", None) or "admin").removeprefix("client.")
        return {
            "protocol": "rbd",
            "pool": self.ceph_pool,
            "hosts": mon_hosts(self.cluster.conf_get("mon_host") or ""),
            "auth_user": user,
            "ceph_conf": self.conf,
        }

    # ---- transactions ----------------------------------------------------------------
    def begin(self) -> None:
        self._undo, self._after = [], []

    def commit(self) -> None:
        after, self._after, self._undo = self._after, [], []
        for fn in after:
            try:
                fn()
            except Exception:  # fsck reports what a failed cleanup leaves
                pass

    def rollback(self) -> None:
        undo, self._undo, self._after = self._undo, [], []
        for fn in reversed(undo):
            try:
                fn()
            except Exception:
                pass

    # ---- volumes -----------------------------------------------------------------------
    def create_volume(self, name, meta):
        # nothing in Ceph until a LUN exists: a volume is the prefix of its images' names
        return self.pool.create_volume(name, meta=meta)

    def delete_volume(self, name):
        live, held = self._referenced_ids(name)
        self.pool.delete_volume(name)
        # hidden at once, so the volume's names are free inside this transaction
        # (a refresh renames its new clone to them before the commit)
        for rbd_id in live:
            try:
                self._rename_image(rbd_id, HIDDEN_PREFIX + rbd_id)
            except self.rbd_mod.ImageNotFound:
                pass  # already gone: fsck reported it
        ids = live | held
        self._after.append(lambda: self._remove_images(ids))

    def _remove_images(self, ids) -> None:
        left = set(ids)
        # LUN clones inside the volume before their parents: pass until nothing moves
        for _ in range(len(left) + 1):
            for rbd_id in sorted(left):
                try:
                    self._remove_image(rbd_id)
                    left.discard(rbd_id)
                except self.rbd_mod.ImageNotFound:
                    left.discard(rbd_id)
                except (self.rbd_mod.ImageBusy, self.rbd_mod.ImageHasSnapshots):
                    continue
            if not left:
                return

    def _remove_image(self, rbd_id: str) -> None:
        with self._image(rbd_id) as img:
            name = img.get_name()
            for s in list(img.list_snaps()):
                if img.is_protected_snap(s["name"]):
                    img.unprotect_snap(s["name"])
                img.remove_snap(s["name"])
        for _ in range(20):  # a closing NBD connection may still watch it for a moment
            try:
                self.r.remove(self.ioctx, name)
                return
            except self.rbd_mod.ImageBusy:
                threading.Event().wait(0.1)
        self.r.remove(self.ioctx, name)

    def rename_volume(self, old, new):
        # the images carry the volume's name: renamed with it (O(LUNs), ids unchanged)
        self.pool.rename_volume(old, new)
        for o in self._luns(new):
            self._rename_image(o.meta["rbd_id"], image_name(new, o.name))

    # ---- LUN objects -----------------------------------------------------------------
    def _features(self) -> int:
        m = self.rbd_mod
        return m.RBD_FEATURE_LAYERING | m.RBD_FEATURE_DEEP_FLATTEN

    def _taken(self, name: str, what: str):
        return ImageNameTaken(pool=self.ceph_pool, image=name, what=what)

    def create_lun(self, vol, name, size, meta):
        img_name = image_name(vol, name)
        try:
            self.r.create(self.ioctx, img_name, size, old_format=False, features=self._features())
        except self.rbd_mod.ImageExists:
            raise self._taken(img_name, "LUN") from None
        rbd_id = self._image_id(img_name)
        self._undo.append(lambda: self._remove_image(rbd_id))
        return self.pool.create_object(vol, name, size, kind="lun", meta=dict(meta, rbd_id=rbd_id))

    def delete_lun(self, vol, name):
        rbd_id = self.pool.object_info(vol, name).meta.get("rbd_id")
        self.pool.delete_object(vol, name)
        if rbd_id:
            self._retire(vol, rbd_id)

    def _retire(self, vol, rbd_id) -> None:
        """An image no live LUN names any more: hidden while a snapshot holds
        it, removed after the commit otherwise."""
        live, held = self._referenced_ids(vol)
        if rbd_id in live:
            return
        # hidden at once either way: its name is free inside this transaction
        # (a restore or a new LUN may take it before the commit)
        self._rename_image(rbd_id, HIDDEN_PREFIX + rbd_id)
        if rbd_id not in held:
            self._after.append(lambda: self._remove_image(rbd_id))

    def _rename_image(self, rbd_id, new) -> None:
        old = self._image_name(rbd_id)
        if old == new:
            return
        try:
            self.r.rename(self.ioctx, old, new)
        except self.rbd_mod.ImageExists:
            raise self._taken(new, "LUN or volume") from None
        self._undo.append(lambda: self.r.rename(self.ioctx, new, old))

    def resize_lun(self, vol, name, size):
        o = self.pool.object_info(vol, name)
        rbd_id, old = o.meta["rbd_id"], o.size
        self.pool.resize_object(vol, name, size)
        if size >= old:
            self._resize(rbd_id, size)
            self._undo.append(lambda: self._resize(rbd_id, old))
        else:  # shrinking drops data: only once the record says so
            self._after.append(lambda: self._resize(rbd_id, size))

    def _resize(self, rbd_id, size):
        with self._image(rbd_id) as img:
            img.resize(size)

    def rename_lun(self, vol, old, new):
        rbd_id = self.pool.object_info(vol, old).meta["rbd_id"]
        self.pool.rename_object(vol, old, new)
        self._rename_image(rbd_id, image_name(vol, new))

    def clone_lun(self, vol, new, parent, snap, meta):
        src = self.pool.object_info(vol, parent, snap)
        rbd_id = self._clone_image(src.meta["rbd_id"], snap, image_name(vol, new))
        return self.pool.create_object(vol, new, src.size, kind="lun", meta=dict(meta, rbd_id=rbd_id))

    def _clone_image(self, parent_id, snap, name) -> str:
        pname = self._image_name(parent_id)
        try:
            self.r.clone(self.ioctx, pname, snap, self.ioctx, name, features=self._features())
        except self.rbd_mod.ImageExists:
            raise self._taken(name, "volume") from None
        cid = self._image_id(name)
        self._undo.append(lambda: self._remove_image(cid))
        return cid

    def open_lun(self, vol, name, snapshot=None):
        o = self.pool.object_info(vol, name, snapshot)
        img = self._image(o.meta["rbd_id"], snapshot=snapshot, read_only=snapshot is not None)
        label = f"/vol/{vol}/{name}" if snapshot is None else f"/vol/{vol}/.snapshot/{snapshot}/{name}"
        h = RbdLun(self, self.pool.volume(vol).id, o.id, img, snapshot is not None, label)
        self._handles.add(h)
        return h

    # ---- snapshots -----------------------------------------------------------------
    def create_snapshot(self, vol, snap, meta):
        vid = self.pool.volume(vol).id
        ds = self.pool.create_snapshot(vol, snap, meta=meta)
        with self._gate(vid).freeze():
            for h in list(self._handles):
                if h._gate is self._gates.get(vid) and not h.read_only:
                    h.flush_open()  # every acknowledged write is in the snapshot
            for o in self._luns(vol):
                rbd_id = o.meta["rbd_id"]
                with self._image(rbd_id) as img:
                    img.create_snap(snap)
                self._undo.append(lambda rbd_id=rbd_id: self._remove_snap(rbd_id, snap))
        return ds

    def _remove_snap(self, rbd_id, snap) -> None:
        with self._image(rbd_id) as img:
            if any(s["name"] == snap for s in img.list_snaps()):
                img.remove_snap(snap)

    def delete_snapshot(self, vol, snap):
        ids = [o.meta["rbd_id"] for o in self._luns(vol, snap)]
        self.pool.delete_snapshot(vol, snap)
        live, held = self._referenced_ids(vol)

        def drop():
            for rbd_id in ids:
                self._remove_snap(rbd_id, snap)
                if rbd_id not in live and rbd_id not in held:
                    self._remove_image(rbd_id)

        self._after.append(drop)

    def rename_snapshot(self, vol, old, new):
        ids = [o.meta["rbd_id"] for o in self._luns(vol, old)]
        self.pool.rename_snapshot(vol, old, new)
        for rbd_id in ids:
            self._rename_snap(rbd_id, old, new)
            self._undo.append(lambda rbd_id=rbd_id: self._rename_snap(rbd_id, new, old))

    def _rename_snap(self, rbd_id, old, new):
        with self._image(rbd_id) as img:
            img.rename_snap(old, new)

    def restore_snapshot(self, vol, snap):
        before = {o.meta.get("rbd_id"): o.name for o in self._luns(vol)}
        self.pool.restore_snapshot(vol, snap)
        after = {o.meta["rbd_id"]: o.name for o in self._luns(vol)}
        for rbd_id in before:
            if rbd_id and rbd_id not in after:
                self._retire(vol, rbd_id)
        vid = self.pool.volume(vol).id
        with self._gate(vid).freeze():
            for rbd_id, name in after.items():
                self._rename_image(rbd_id, image_name(vol, name))
                with self._image(rbd_id) as img:
                    img.rollback_to_snap(snap)

    def restore_cost(self, vol, snap) -> str:
        from ..filer.sizes import format_size

        total = sum(o.size for o in self._luns(vol, snap))
        return (
            f"On RBD a restore is a rollback: it rewrote all {format_size(total)} of the "
            f"volume's LUNs from the snapshot (its cost is the volume's size, not O(1))."
        )

    def snapshot_clones(self, vol, snap) -> list[str]:
        out = list(self.pool.clones_of(vol, snap))
        owners = None  # rbd id -> volume, built when an RBD child is met
        for o in self._luns(vol, snap):
            try:
                with self._image(o.meta["rbd_id"], snapshot=snap, read_only=True) as img:
                    children = list(img.list_children2())
            except self.rbd_mod.ImageNotFound:
                continue
            for c in children:
                if c.get("trash"):
                    continue
                v = None
                if c.get("pool") == self.ceph_pool and not c.get("pool_namespace"):
                    if owners is None:
                        owners = self._volume_of_ids()
                    v = owners.get(c.get("id"))
                if v == vol:
                    # a LUN clone inside the volume: as on the engine it does not pin the
                    # snapshot (clone v2 keeps the RBD snapshot in the trash until it goes)
                    continue
                ns = f"{c['pool_namespace']}/" if c.get("pool_namespace") else ""
                label = v or f"rbd:{c['pool']}/{ns}{c['image']}"
                if label not in out:
                    out.append(label)
        return out

    # ---- clones ----------------------------------------------------------------------
    def clone_volume(self, new, parent, snap, meta, object_meta=None):
        ids = {}
        for o in self._luns(parent, snap):
            ids[o.name] = self._clone_image(o.meta["rbd_id"], snap, image_name(new, o.name))

        def meta_of(name, m):
            if object_meta is not None:
                m = object_meta(name, m)
            if name in ids:
                m = dict(m, rbd_id=ids[name])
            return m

        return self.pool.clone_volume(new, parent, snap, meta=meta, object_meta=meta_of)

    def split_steps(self, vol):
        """Flatten every clone image of the volume (RBD's progress, in
        objects), then detach the clone in the control plane."""
        if self.pool.origin_of(vol) is None:
            raise InvalidArgument(detail=f"volume {vol} is not a clone; nothing to split")
        work = []
        for o in self._luns(vol):
            with self._image(o.meta["rbd_id"], read_only=True) as img:
                try:
                    img.parent_id()
                except self.rbd_mod.ImageNotFound:
                    continue
                work.append((o.meta["rbd_id"], -(-img.size() // img.stat()["obj_size"])))
        return self._split_gen(vol, work)

    def _split_gen(self, vol, work):
        total = sum(n for _, n in work) or 1
        done = 0
        yield done, total
        stop = threading.Event()
        for rbd_id, n in work:
            q: queue.Queue = queue.Queue()

            def run(rbd_id=rbd_id, q=q):
                try:
                    with self._image(rbd_id) as img:
                        img.flatten(
                            on_progress=lambda off, tot: (q.put(("p", off)), -1 if stop.is_set() else 0)[1]
                        )
                    q.put(("done", None))
                except Exception as e:  # handed to the generator's caller
                    q.put(("error", e))

            t = threading.Thread(target=run, name=f"flatten-{vol}", daemon=True)
            t.start()
            try:
                while True:
                    kind, v = q.get()
                    if kind == "p":
                        yield min(done + v, total), total
                    elif kind == "error":
                        raise v
                    else:
                        break
            except GeneratorExit:
                stop.set()
                t.join()
                raise
            t.join()
            done += n
            yield min(done, total), total
        # every image is flat: the clone no longer depends on the snapshot
        for _ in self.pool.split_clone_steps(vol):
            pass
        yield total, total

    def split_estimate(self, vol) -> int:
        """Bytes the clone still reads from its parent snapshot."""
        if self.pool.origin_of(vol) is None:
            return 0
        total = 0
        for o in self._luns(vol):
            with self._image(o.meta["rbd_id"], read_only=True) as img:
                try:
                    img.parent_id()
                except self.rbd_mod.ImageNotFound:
                    continue
                overlap = img.overlap()
                if overlap:
                    all_ = _allocated(img, 0, overlap, include_parent=True)
                    own = _allocated(img, 0, overlap, include_parent=False)
                    total += max(0, _bytes(all_) - _bytes(own))
        return total

    # ---- space -------------------------------------------------------------------------
    def space(self, vol, snapshot=None):
        bs = self.pool.block_size
        logical = written = unique = 0
        for o in self._luns(vol, snapshot):
            logical += o.size
            with self._image(o.meta["rbd_id"], snapshot=snapshot, read_only=True) as img:
                w = _bytes(_allocated(img, 0, o.size, include_parent=True))
                if snapshot is None:
                    u = _bytes(_allocated(img, 0, o.size, include_parent=False))
                else:
                    u = 0
            if snapshot is not None:
                # what the snapshot alone holds: its blocks the volume has changed since
                with self._image(o.meta["rbd_id"], read_only=True) as head:
                    u = min(w, _bytes(_allocated(head, 0, min(o.size, head.size()), from_snapshot=snapshot)))
            written += w
            unique += u
        return SpaceInfo(logical, -(-written // bs), -(-unique // bs), -(-(written - unique) // bs), bs)

    def usage_override(self, f, vol, size):
        from ..filer.volume import opts

        o = opts(f, vol)
        bs = self.pool.block_size
        sp = self.space(vol)
        active = sp.written_bytes
        snap_used = sum(self.space(vol, s.name).unique_bytes for s in self.pool.list_snapshots(vol))
        pool_free = self.pool_space()["free_bytes"]
        if size is None:
            reserve, total = 0, active + pool_free
        else:
            reserve = size * int(o["snap_reserve"]) // 100
            total = size - reserve
        spill = max(0, snap_used - reserve)
        used = active + spill
        return {
            "volume": vol,
            "size": size,
            "total": total,
            "used": used,
            "available": max(0, min(total - used, pool_free)),
            "active": active,
            "shared": sp.shared_bytes,
            "snap_reserve": reserve,
            "snap_used": snap_used,
            "snap_available": max(0, reserve - snap_used),
            "spill": spill,
            "logical": sp.logical_bytes,
            "block_size": bs,
            "snap_used_exact": True,
        }

    def pool_space(self) -> dict:
        """The cluster's figures (``rados df`` totals; RBD itself keeps no
        per-pool free count), in the engine's shape."""
        st = self.cluster.get_cluster_stats()
        bs = self.pool.block_size
        used, total, free = st["kb_used"] * 1024, st["kb"] * 1024, st["kb_avail"] * 1024
        if not total:
            # No ceph-mgr reports capacity: count what the images hold, and
            # take the LUNs' provisioned size as the room they have.
            used = provisioned = 0
            for v in self.pool.list_volumes():
                used += self.space(v.name).unique_bytes
                provisioned += sum(o.size for o in self._luns(v.name))
            total = max(provisioned, used)
            free = total - used
        return {
            "block_size": bs,
            "used_blocks": used // bs,
            "used_bytes": used,
            "free_bytes": free,
            "total_bytes": total,
            "metadata_bytes": sum(
                os.path.getsize(os.path.join(self.pool.path, f))
                for f in ("pool.db", "pool.db-wal")
                if os.path.exists(os.path.join(self.pool.path, f))
            ),
            "capacity_bytes": 0,
        }

    # ---- checks --------------------------------------------------------------------------
    def fsck(self) -> dict:
        """The control plane's own fsck, then both sides against each other:
        every LUN (live or in a snapshot) has its image (and RBD snapshot),
        a live LUN's image carries its name (``image_name``: libvirt disks
        name it), every ``coppice.*`` image of the Ceph pool is some LUN's,
        and clone images have the parent the control plane records."""
        rep = self.pool.fsck().as_dict()
        problems = list(rep.get("problems", []))
        try:
            present = {i["id"]: i["name"] for i in self.r.list2(self.ioctx)}
        except self.rbd_mod.Error as e:
            problems.append(f"cannot list the RBD images of {self.ceph_pool}: {e}")
            present = {}
        claimed: set = set()
        for v in self.pool.list_volumes():
            vol = v.name
            live, held = self._referenced_ids(vol)
            claimed |= live | held
            for o in self._luns(vol):
                rid = o.meta.get("rbd_id")
                if rid not in present:
                    problems.append(f"LUN /vol/{vol}/{o.name}: its RBD image (id {rid}) is missing")
                elif present[rid] != image_name(vol, o.name):
                    problems.append(
                        f"LUN /vol/{vol}/{o.name}: its RBD image is named {present[rid]}, "
                        f"not {image_name(vol, o.name)}"
                    )
            for s in self.pool.list_snapshots(vol):
                for o in self._luns(vol, s.name):
                    rid = o.meta.get("rbd_id")
                    if rid not in present:
                        problems.append(
                            f"snapshot {vol}@{s.name} LUN {o.name}: its RBD image (id {rid}) is missing"
                        )
                        continue
                    with self._image(rid, read_only=True) as img:
                        if not any(x["name"] == s.name for x in img.list_snaps()):
                            problems.append(
                                f"snapshot {vol}@{s.name} LUN {o.name}: image {present[rid]} "
                                f"has no RBD snapshot {s.name}"
                            )
            origin = self.pool.origin_of(vol)
            if origin is None:
                continue
            ids_by_name = {n: i for i, n in present.items()}
            want = {o.meta.get("rbd_id") for o in self._luns(origin[0], origin[1])}
            for o in self._luns(vol):
                rid = o.meta.get("rbd_id")
                if rid not in present:
                    continue
                with self._image(rid, read_only=True) as img:
                    try:
                        spec = img.get_parent_image_spec()
                    except self.rbd_mod.ImageNotFound:
                        continue  # flattened (partly split clone): allowed
                pid = ids_by_name.get(spec.get("image_name")) if not spec.get("pool_namespace") else None
                from_origin = pid in want and spec.get("snap_name") == origin[1]
                if not from_origin and pid not in live | held:  # a LUN clone inside the volume is fine
                    problems.append(
                        f"LUN /vol/{vol}/{o.name}: RBD parent is {spec.get('image_name')}"
                        f"@{spec.get('snap_name')}, the pool records {origin[0]}@{origin[1]}"
                    )
        ours = {rid: n for rid, n in present.items() if n.startswith(IMAGE_PREFIX + ".")}
        for rid, name in sorted(ours.items(), key=lambda kv: kv[1]):
            if rid not in claimed:
                problems.append(f"RBD image {self.ceph_pool}/{name} belongs to no LUN of this pool")
        rep["problems"] = problems
        rep["clean"] = bool(rep.get("clean", True)) and not problems
        rep["rbd"] = {"images": len(ours), "ceph_pool": self.ceph_pool}
        return rep
