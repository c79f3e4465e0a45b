"""libvirt connections a daemon keeps open while it runs.

Contract: ``Hypervisors.get(uri)`` returns one shared connection per URI,
opened at first use and closed by ``close_all()`` (at daemon stop). The
handle's ``close()`` does nothing, so the provisioner's own "close when
done" leaves the connection to the daemon. Keeping it open matters for
libvirt's ``test:///default`` driver, whose state lives only while a
connection to it is open in the process. Thread-safe (libvirt connections
are).
"""

from __future__ import annotations

import threading


class _Shared:
    def __init__(self, hv):
        self._hv = hv

    def __getattr__(self, name):
        return getattr(self._hv, name)

    def close(self) -> None:
        pass  # the daemon owns the connection (close_all)


class Hypervisors:
    def __init__(self):
        self._lock = threading.Lock()
        self.conns: dict[str, _Shared] = {}

    def get(self, uri: str) -> _Shared:
        with self._lock:
            if uri not in self.conns:
                from ..provision.errors import LibvirtUnavailable
                from ..provision.hypervisor import Hypervisor

                try:
                    self.conns[uri] = _Shared(Hypervisor.open(uri))
                except LibvirtUnavailable as e:
                    # the caller named a libvirt the daemon cannot reach: the caller's to fix (4xx), not ours
                    e.http_status = 400
                    raise
            return self.conns[uri]

    def for_uris(self, uris) -> dict:
        """The shared dict, with a connection for each of ``uris`` that can open."""
        for u in set(uris):
            try:
                self.get(u)
            except Exception:
                pass  # reported per VM as state 'unknown'
        return self.conns

    def close_all(self) -> None:
        with self._lock:
            conns, self.conns = list(self.conns.values()), {}
        for c in conns:
            try:
                c._hv.close()
            except Exception:
                pass


def of(state) -> Hypervisors:
    """The app's connections (``app.state``), made at first use."""
    hv = getattr(state, "hypervisors", None)
    if hv is None:
        with _make_lock:
            hv = getattr(state, "hypervisors", None)
            if hv is None:
                hv = state.hypervisors = Hypervisors()
    return hv


_make_lock = threading.Lock()
