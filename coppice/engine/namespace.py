"""The pool's namespace: volumes, the objects in them, and the pool-wide
key-value records of the layers above.

Contract: ``Namespace`` is the part of ``Pool`` that creates, finds,
renames, changes and deletes volumes and objects (LUN data and small
files), and keeps ``Pool.datasets`` / ``Pool.objects`` and their name
indexes equal to pool.db's rows. Every public method takes the pool's lock;
every change runs in ``Pool.transaction``, so it is atomic and durable on
return and a refused one (a bad name, a name taken, a size out of range)
changes nothing. Creating an object is thin (metadata only, whatever its
size); ``clone_object`` is O(1). A volume with snapshots a clone depends
on is not deleted (``SnapshotBusy``).

A mixin of ``Pool`` (``engine/pool.py``): it uses the pool's state and its
data path (``_read``, ``_write``, ``_write_blocks``) and holds none of its own.
"""

from __future__ import annotations

import json
import time

from ..errors import InvalidArgument, NotFound
from . import blockmap
from .errors import ObjectExists, ObjectNotFound, SnapshotBusy, SnapshotNotFound, VolumeExists, VolumeNotFound
from .handle import ObjectHandle
from .records import Dataset, ObjRec, validate_name


class Namespace:
    """Volumes, objects and kv records of a ``Pool``."""

    # ---- lookups -----------------------------------------------------------------
    @staticmethod
    def _dkey(d: Dataset) -> tuple:
        return (d.kind, d.volume_id if d.kind == "snapshot" else None, d.name)

    def _volume(self, name: str) -> Dataset:
        d = self._dsidx.get(("volume", None, name))
        if d is None:
            raise VolumeNotFound(name=name)
        return d

    def _snapshot(self, vol: Dataset, snap: str) -> Dataset:
        d = self._dsidx.get(("snapshot", vol.id, snap))
        if d is None:
            raise SnapshotNotFound(volume=vol.name, snap=snap)
        return d

    def _rename_dataset(self, d: Dataset, new: str) -> None:
        del self._dsidx[self._dkey(d)]
        d.name = new
        self._dsidx[self._dkey(d)] = d

    def _dataset(self, volume: str, snapshot: str | None = None) -> Dataset:
        v = self._volume(volume)
        return self._snapshot(v, snapshot) if snapshot is not None else v

    def _objects_of(self, ds: Dataset) -> list[ObjRec]:
        objs = self._by_ds.get(ds.id)
        return [objs[n] for n in sorted(objs)] if objs else []

    def _object(self, ds: Dataset, name: str) -> ObjRec:
        o = self._by_ds.get(ds.id, {}).get(name)
        if o is None:
            raise ObjectNotFound(kind="Object", name=name, where=self._ds_label(ds))
        return o

    def _index(self, o: ObjRec) -> None:
        self.objects[o.id] = o
        self._by_ds.setdefault(o.dataset_id, {})[o.name] = o

    def _ds_label(self, ds: Dataset) -> str:
        if ds.kind == "snapshot":
            return f"snapshot {ds.name} of volume {self.datasets[ds.volume_id].name}"
        return f"volume {ds.name}"

    def _snapshots_of(self, vol: Dataset) -> list[Dataset]:
        return sorted(
            (self.datasets[i] for i in self._snap_ids.get(vol.id, ())), key=lambda d: (d.created, d.id)
        )

    def _clones_of(self, snap: Dataset) -> list[Dataset]:
        # an index, not a walk of every dataset: asked on every snapshot
        # create, delete and show, in pools of 10,000 clone volumes
        return sorted((self.datasets[i] for i in self._clone_ids.get(snap.id, ())), key=lambda d: d.name)

    # ---- volumes -----------------------------------------------------------------
    def create_volume(self, name: str, meta: dict | None = None) -> Dataset:
        validate_name("volume", name)
        with self.transaction():
            if ("volume", None, name) in self._dsidx:
                raise VolumeExists(name=name)
            return self._insert_dataset("volume", name, None, None, meta or {})

    def _insert_dataset(self, kind, name, volume_id, origin_id, meta) -> Dataset:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO datasets (kind, name, volume_id, origin_id, created, meta) VALUES (?,?,?,?,?,?)",
            (kind, name, volume_id, origin_id, now, json.dumps(meta)),
        )
        d = Dataset(cur.lastrowid, kind, name, volume_id, origin_id, now, dict(meta))
        self.datasets[d.id] = d
        self._dsidx[self._dkey(d)] = d
        if kind == "snapshot":
            self._snap_ids.setdefault(volume_id, set()).add(d.id)
        elif origin_id is not None:
            self._clone_ids.setdefault(origin_id, set()).add(d.id)
        return d

    def list_volumes(self) -> list[Dataset]:
        with self._lock:
            return sorted((d for d in self.datasets.values() if d.kind == "volume"), key=lambda d: d.name)

    def volume(self, name: str) -> Dataset:
        with self._lock:
            return self._volume(name)

    def has_volume(self, name: str) -> bool:
        with self._lock:
            return ("volume", None, name) in self._dsidx

    def origin_of(self, volume: str) -> tuple[str, str] | None:
        """(parent volume, snapshot) a clone depends on, or None."""
        with self._lock:
            v = self._volume(volume)
            if v.origin_id is None:
                return None
            s = self.datasets[v.origin_id]
            return self.datasets[s.volume_id].name, s.name

    def set_volume_meta(self, name: str, meta: dict) -> None:
        with self.transaction():
            v = self._volume(name)
            self.db.execute("UPDATE datasets SET meta=? WHERE id=?", (json.dumps(meta), v.id))
            v.meta = dict(meta)

    def rename_volume(self, old: str, new: str) -> None:
        validate_name("volume", new)
        with self.transaction():
            v = self._volume(old)
            if old == new:
                return
            if ("volume", None, new) in self._dsidx:
                raise VolumeExists(name=new)
            self.db.execute("UPDATE datasets SET name=? WHERE id=?", (new, v.id))
            self._rename_dataset(v, new)

    def delete_volume(self, name: str) -> None:
        """Destroy a volume with its snapshots. Refused while a clone depends
        on one of its snapshots."""
        with self.transaction():
            v = self._volume(name)
            for s in self._snapshots_of(v):
                clones = self._clones_of(s)
                if clones:
                    raise SnapshotBusy(volume=name, snap=s.name, clones=", ".join(c.name for c in clones))
            for s in self._snapshots_of(v):
                self._drop_dataset(s)
            self._drop_dataset(v)

    def _drop_dataset(self, ds: Dataset) -> None:
        for o in self._objects_of(ds):
            self._drop_object(o)
        self.db.execute("DELETE FROM datasets WHERE id=?", (ds.id,))
        del self.datasets[ds.id]
        del self._dsidx[self._dkey(ds)]
        if ds.kind == "snapshot":
            self._snap_ids.get(ds.volume_id, set()).discard(ds.id)
            self._clone_ids.pop(ds.id, None)
        elif ds.origin_id is not None:
            self._clone_ids.get(ds.origin_id, set()).discard(ds.id)

    def _drop_object(self, o: ObjRec) -> None:
        if o.root:
            self.cache.decref_page(o.root)
        self.db.execute("DELETE FROM objects WHERE id=?", (o.id,))
        del self.objects[o.id]
        objs = self._by_ds.get(o.dataset_id)
        if objs is not None:
            objs.pop(o.name, None)
            if not objs:
                del self._by_ds[o.dataset_id]
        self._dirty_objs.pop(o.id, None)

    # ---- objects -----------------------------------------------------------------
    def _nblocks(self, o: ObjRec) -> int:
        return -(-o.size // self.block_size)

    def create_object(
        self, volume: str, name: str, size: int, kind: str = "lun", meta: dict | None = None
    ) -> ObjRec:
        """A thin object: metadata only, whatever its size."""
        validate_name("object", name)
        self._check_size(size, name)
        with self.transaction():
            v = self._volume(volume)
            if name in self._by_ds.get(v.id, {}):
                raise ObjectExists(name=name, volume=volume)
            h = blockmap.height_for(-(-size // self.block_size))
            m = meta or {}
            cur = self.db.execute(
                "INSERT INTO objects (dataset_id, name, kind, size, root, height, meta) VALUES (?,?,?,?,?,?,?)",
                (v.id, name, kind, size, 0, h, json.dumps(m)),
            )
            o = ObjRec(cur.lastrowid, v.id, name, kind, size, 0, h, dict(m))
            self._index(o)
            return o

    def _check_size(self, size, name):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(
                detail=f"size {size!r} for {name} is invalid: give a whole number of bytes >= 0"
            )
        if size > (1 << 60):
            raise InvalidArgument(detail=f"size {size} for {name} is too large (limit 1 EiB)")

    def clone_object(
        self, volume: str, new: str, src: str, snapshot: str | None = None, meta: dict | None = None
    ) -> ObjRec:
        """O(1) copy of object ``src`` (of a snapshot of the same volume, or
        of the volume itself) under a new name in ``volume``."""
        validate_name("object", new)
        with self.transaction():
            v = self._volume(volume)
            ds = self._snapshot(v, snapshot) if snapshot is not None else v
            o = self._object(ds, src)
            if new in self._by_ds.get(v.id, {}):
                raise ObjectExists(name=new, volume=volume)
            return self._copy_object(o, v.id, new, meta)

    def delete_object(self, volume: str, name: str) -> None:
        with self.transaction():
            self._drop_object(self._object(self._volume(volume), name))

    def rename_object(self, volume: str, old: str, new: str) -> None:
        validate_name("object", new)
        with self.transaction():
            v = self._volume(volume)
            o = self._object(v, old)
            if old == new:
                return
            if new in self._by_ds.get(v.id, {}):
                raise ObjectExists(name=new, volume=volume)
            objs = self._by_ds[v.id]
            del objs[old]
            o.name = new
            objs[new] = o
            self._dirty_objs[o.id] = o

    def set_object_meta(self, volume: str, name: str, meta: dict) -> None:
        with self.transaction():
            o = self._object(self._volume(volume), name)
            o.meta = dict(meta)
            self._dirty_objs[o.id] = o

    def resize_object(self, volume: str, name: str, size: int) -> None:
        """Grow (thin: metadata only) or shrink (blocks past the new end are
        released) an object."""
        with self.transaction():
            o = self._object(self._volume(volume), name)
            self._check_size(size, name)
            old_nb, new_nb = self._nblocks(o), -(-size // self.block_size)
            if new_nb < old_nb:
                blockmap.clear_range(self.cache, o, new_nb, old_nb)
            elif new_nb > old_nb:
                blockmap.grow(self.cache, o, blockmap.height_for(new_nb))
            if size % self.block_size and size < o.size:
                # Zero the tail of a now-partial last block so a later grow
                # reads zeros there, not old bytes.
                last = size // self.block_size
                buf = bytearray(self._read_blocks(o, last, 1))
                buf[size % self.block_size :] = bytes(self.block_size - size % self.block_size)
                o.size = max(o.size, (last + 1) * self.block_size)
                self._write_blocks(o, last, memoryview(buf))
            o.size = size
            self._dirty_objs[o.id] = o

    def list_objects(self, volume: str, snapshot: str | None = None) -> list[ObjRec]:
        with self._lock:
            return self._objects_of(self._dataset(volume, snapshot))

    def object_info(self, volume: str, name: str, snapshot: str | None = None) -> ObjRec:
        with self._lock:
            return self._object(self._dataset(volume, snapshot), name)

    def has_object(self, volume: str, name: str, snapshot: str | None = None) -> bool:
        with self._lock:
            try:
                self._object(self._dataset(volume, snapshot), name)
                return True
            except NotFound:
                return False

    def write_file(self, volume: str, name: str, data: bytes, meta: dict | None = None) -> ObjRec:
        """Create or replace small file ``name`` with ``data``, atomically."""
        validate_name("object", name)
        with self.transaction():
            v = self._volume(volume)
            o = self._by_ds.get(v.id, {}).get(name)
            if o is not None:
                self._drop_object(o)
            o = self.create_object(volume, name, len(data), kind="file", meta=meta)
            if data:
                self._write(o, 0, memoryview(data))
            return o

    def read_file(self, volume: str, name: str, snapshot: str | None = None) -> bytes:
        with self._lock:
            o = self._object(self._dataset(volume, snapshot), name)
            return bytes(self._read(o, 0, o.size))

    def open_object(self, volume: str, name: str, snapshot: str | None = None) -> ObjectHandle:
        with self._lock:
            ds = self._dataset(volume, snapshot)
            return ObjectHandle(self, self._object(ds, name), read_only=ds.kind == "snapshot")

    # ---- pool-level records for upper layers -------------------------------------
    def kv_get(self, scope: str, key: str, default=None):
        with self._lock:
            row = self.db.execute("SELECT value FROM kv WHERE scope=? AND key=?", (scope, key)).fetchone()
            return json.loads(row[0]) if row else default

    def kv_put(self, scope: str, key: str, value) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO kv (scope, key, value) VALUES (?,?,?)",
                (scope, key, json.dumps(value)),
            )

    def kv_delete(self, scope: str, key: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM kv WHERE scope=? AND key=?", (scope, key))

    def kv_items(self, scope: str) -> list[tuple[str, object]]:
        with self._lock:
            return [
                (k, json.loads(v))
                for k, v in self.db.execute("SELECT key, value FROM kv WHERE scope=? ORDER BY key", (scope,))
            ]
