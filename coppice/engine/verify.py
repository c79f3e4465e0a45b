"""The pool's checks: fsck, scrub, and a dump of what a user can see.

Contract: ``Verification`` is the part of ``Pool`` that proves the store
is right. ``fsck`` (``engine/fsck.py``) recomputes every reference count
from the block maps and compares it with the stored one (no leaked, no
doubly-owned block); ``scrub`` (``engine/scrub.py``) reads every block and
page and checks its checksum. Both run under the lock on committed
metadata: they commit a consistency point first where the file system
lets them, else they check what is committed. ``dump`` returns everything
a user can observe of the namespace, so a test can prove a refused
command changed nothing. None of them changes data.

A mixin of ``Pool`` (``engine/pool.py``).
"""

from __future__ import annotations

from ..errors import NoSpace
from .checksum import block_checksum


class Verification:
    """fsck, scrub and dump of a ``Pool``."""

    # ---- checks ------------------------------------------------------------------
    def _checkpoint_for_check(self) -> None:
        """fsck and scrub read committed metadata: commit first if that can
        be done; on a full file system they check what is committed (the
        intent log's records join at the next consistency point)."""
        try:
            self._checkpoint()
        except NoSpace:
            self._cp_blocked = True

    def fsck(self):
        from .fsck import fsck

        with self._lock:
            self._checkpoint_for_check()
            return fsck(self)

    def scrub(self, progress=None):
        from .scrub import scrub

        with self._lock:
            self._checkpoint_for_check()
            return scrub(self, progress)

    def dump(self) -> dict:
        """Everything a user can observe of the pool's namespace (used by
        tests to prove a refused command changed nothing)."""
        with self._lock:
            out = {}
            for d in sorted(self.datasets.values(), key=lambda d: (d.kind, d.name, d.volume_id or 0)):
                key = d.name if d.kind == "volume" else f"{self.datasets[d.volume_id].name}@{d.name}"
                out[key] = {
                    "kind": d.kind,
                    "meta": d.meta,
                    "origin": (lambda s: f"{self.datasets[s.volume_id].name}@{s.name}")(
                        self.datasets[d.origin_id]
                    )
                    if d.origin_id
                    else None,
                    "objects": {
                        o.name: {
                            "kind": o.kind,
                            "size": o.size,
                            "meta": o.meta,
                            "content": block_checksum(bytes(self._read(o, 0, o.size)))
                            if o.size <= (64 << 20)
                            else None,
                        }
                        for o in self._objects_of(d)
                    },
                }
            out["__kv__"] = [
                list(r) for r in self.db.execute("SELECT scope, key, value FROM kv ORDER BY 1, 2")
            ]
            return out
