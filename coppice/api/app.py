"""The FastAPI application: every REST resource of a daemon over one Filer.

Contract: ``create_app(filer, jobs, token=..., scheduler=..., nbd=...)``
returns an ASGI app whose state holds what its routes use (``filer``,
``jobs``, ``scheduler``, ``nbd``, ``token``). Routes live one resource per
module in ``coppice.api.routes``; ``RESOURCES`` lists them, in the order
they appear in ``/openapi.json``. Every route but ``/health`` (and the
OpenAPI documents) requires the bearer token unless the request came over
the Unix socket (``auth``). Errors are JSON (``errors``). The app does no
I/O of its own at import or build time; endpoints are plain ``def``s that
FastAPI runs in its thread pool (the Filer is thread-safe).

Every table route calls a façade (``state.facades``: the Filer,
``Provisioning`` with the daemon's libvirt connections and NBD address,
``Dedup``). To add a call: a row in ``coppice.operations``, the façade
method on both sides, and the request model in the resource's route
module; a new resource also goes into ``RESOURCES``.
"""

from __future__ import annotations

from fastapi import FastAPI

from ..console import install as install_console
from .errors import install_handlers
from .routes import (
    clones,
    custspecs,
    datastores,
    dedup,
    health,
    igroups,
    jobs,
    luns,
    maps,
    pool,
    schedules,
    snapshots,
    templates,
    vms,
    volumes,
)
from .routes import (
    nbd as nbd_routes,
)

RESOURCES = [
    health,
    pool,
    volumes,
    snapshots,
    clones,
    luns,
    igroups,
    maps,
    schedules,
    dedup,
    templates,
    custspecs,
    vms,
    datastores,
    jobs,
    nbd_routes,
]

API_VERSION = "1"


def create_app(
    filer,
    jobs_runner=None,
    token: str | None = None,
    token_path: str | None = None,
    scheduler=None,
    nbd=None,
    daemon_info: dict | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Coppice",
        version=API_VERSION,
        description="Copy-on-write filer, NBD block target and VM provisioner. Every call but "
        "/health needs `Authorization: Bearer TOKEN` (the token is in POOL/api.token) "
        "unless it comes over the pool's Unix socket (POOL/coppice.sock). Errors are "
        "JSON: {error, message, status}. Long operations return a job: poll /jobs/{id}.",
    )
    st = app.state
    st.filer = filer
    st.jobs = jobs_runner
    st.token = token
    st.token_path = token_path or "POOL/api.token"
    st.scheduler = scheduler
    st.nbd = nbd
    st.daemon_info = daemon_info or {}
    st.stopping = False
    st.facades = facades(st)
    install_handlers(app)
    for mod in RESOURCES:
        app.include_router(mod.router)
    install_console(app)  # the web console at / (coppice.console)
    return app


class _AppHypervisors:
    """The app's libvirt connections as they are at each call (the daemon
    configures them after it builds the app)."""

    def __init__(self, state):
        self._state = state

    def __getattr__(self, name):
        from . import hypervisors

        return getattr(hypervisors.of(self._state), name)


def _import_policy(state):
    from ..provision import import_dir

    return import_dir.policy_of(state)


def facades(state) -> dict:
    """The façade of each layer that the table's routes call, for one app."""
    from ..dedup.facade import Dedup
    from ..provision.facade import Provisioning

    return {
        "filer": state.filer,
        "provision": Provisioning(
            state.filer,
            hypervisors=_AppHypervisors(state),
            default_target=lambda nbd, tls: vms.daemon_target(state, nbd, tls),
            import_policy=lambda: _import_policy(state),
        ),
        "dedup": Dedup(state.filer),
    }


def register_jobs(runner, filer) -> None:
    """The job kinds a daemon runs."""
    from ..dedup.facade import Dedup

    runner.register(
        "clone_split",
        clones.run_split(filer),
        resumable=True,
        description="split a clone from its parent snapshot",
    )
    runner.register(
        "dedup_scan",
        dedup.run_scan(Dedup(filer)),
        resumable=True,
        description="post-process deduplication scan",
    )
    runner.register(
        "scrub", pool.run_scrub(filer), resumable=False, description="verify every block's checksum"
    )


def register_app_jobs(runner, app) -> None:
    """The job kinds that need the app's state (its libvirt connections, its NBD address)."""
    runner.register(
        "provision",
        vms.run_provision(app.state.facades["provision"]),
        resumable=False,
        description="provision a batch of VMs from a template",
    )
