"""The libvirt connections a daemon may open, and keeps open while it runs.

Contract: a daemon connects only to the hypervisor URIs it was configured
with when it started (``coppice serve --connect URI``, repeatable, or
``COPPICE_CONNECT``; default ``qemu:///system``); the first is the default
a request gets when it names none. A request naming any other URI is
refused with ``ConnectNotAllowed`` before libvirt sees it — a libvirt URI
can run programs (``qemu+ext://``), read host files (``test:///FILE``) or
create directories (``qemu:///embed?root=DIR``) as the daemon's user, so an
API token must not choose one. ``Hypervisors.get(uri)`` returns one shared
connection per allowed URI, opened at first use and closed by
``close_all()`` (at daemon stop); at most one connection per configured
URI ever exists. The handle's ``close()`` does nothing, so the
provisioner's own "close when done" leaves the connection to the daemon
(which matters for ``test:///default``, whose state lives only while a
connection to it is open in the process). Thread-safe.
"""

from __future__ import annotations

import os
import threading

from ..errors import InvalidArgument

SYSTEM_URI = "qemu:///system"


class ConnectNotAllowed(InvalidArgument):
    """libvirt URI {uri!r} is not one this daemon connects to; it connects only to: {allowed}.
    The daemon's administrator configures them when it starts (`coppice serve --connect URI`,
    repeatable, or COPPICE_CONNECT)."""

    http_status = 403


def configured_uris(connect=None) -> list[str]:
    """The URIs a daemon allows: ``connect`` (a list or a string), else COPPICE_CONNECT, else qemu:///system."""
    if connect is None:
        connect = os.environ.get("COPPICE_CONNECT") or ""
    if isinstance(connect, str):
        connect = connect.replace(",", " ").split()
    out: list[str] = []
    for u in connect:
        u = u.strip()
        if u and u not in out:
            out.append(u)
    return out or [SYSTEM_URI]


class _Shared:
    def __init__(self, hv):
        self._hv = hv

    def __getattr__(self, name):
        return getattr(self._hv, name)

    def close(self) -> None:
        pass  # the daemon owns the connection (close_all)


class Hypervisors:
    def __init__(self, allowed=None):
        self._lock = threading.Lock()
        self.allowed: list[str] = configured_uris(allowed)
        self.conns: dict[str, _Shared] = {}

    @property
    def default(self) -> str:
        return self.allowed[0]

    def resolve(self, uri: str | None) -> str:
        """The URI a request means: the default for none, else the URI itself when allowed."""
        if uri is None or (isinstance(uri, str) and not uri.strip()):
            return self.default
        if uri not in self.allowed:
            raise ConnectNotAllowed(uri=uri, allowed=", ".join(self.allowed))
        return uri

    def get(self, uri: str | None = None) -> _Shared:
        uri = self.resolve(uri)
        with self._lock:
            if uri not in self.conns:
                from ..provision.errors import LibvirtUnavailable
                from ..provision.hypervisor import Hypervisor

                try:
                    self.conns[uri] = _Shared(Hypervisor.open(uri))
                except LibvirtUnavailable as e:
                    # a configured libvirt that does not answer: the host's to fix, said as such
                    e.http_status = 503
                    raise
            return self.conns[uri]

    def for_uris(self, uris) -> dict:
        """The shared dict, with a connection for each of ``uris`` that is allowed and opens."""
        for u in set(uris):
            if u not in self.allowed:
                continue  # reported per VM as state 'unknown'
            try:
                self.get(u)
            except Exception:
                pass
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
    """The app's connections (``app.state``); made at first use from COPPICE_CONNECT when the
    daemon did not configure them."""
    hv = getattr(state, "hypervisors", None)
    if hv is None:
        with _make_lock:
            hv = getattr(state, "hypervisors", None)
            if hv is None:
                hv = state.hypervisors = Hypervisors()
    return hv


_make_lock = threading.Lock()
