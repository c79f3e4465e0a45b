"""The root of every error Coppice raises on purpose, and their catalogue.

Contract: each error class's docstring is its message template; the message
says what is wrong and what to do about it. ``exit_code`` is what the CLI
exits with, ``http_status`` what the REST API answers, ``errno`` what the NBD
target sends when the error reaches a client. Anything that is not a
CoppiceError reaching the top is a bug.

The catalogue (``CATALOGUE``: stable code -> "module:Class") gives every
error class one number that never changes and never is reused; the REST API
sends it (``code``) and ``rebuild`` turns it back into the same class on
the client, importing only the module that defines it. Names are
unique across layers; each exit code is declared by one class (its
subclasses share it). ``tests/test_error_catalogue.py`` walks every class
and holds these rules; ``scripts/errors_doc.py`` writes docs/errors.md
from it. A new error class takes the next free code of its layer.
"""

from __future__ import annotations

import errno as _errno
import os


class CoppiceError(Exception):
    """Coppice failed: {detail}"""

    @classmethod
    def catalogue_code(cls) -> int | None:
        return _CODE_OF.get(cls.__name__)

    exit_code = 1
    http_status = 400
    errno = _errno.EINVAL

    def __init__(self, *args, **kwargs):
        self.kwargs = kwargs
        self.args_ = args
        template = (self.__doc__ or "{detail}").strip().split("\n\n")[0]
        template = " ".join(template.split())
        try:
            message = template.format(*args, **kwargs)
        except (IndexError, KeyError):
            message = template + (" " + " ".join(map(str, args)) if args else "")
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class NotFound(CoppiceError):
    """{what} not found: {detail}"""

    exit_code = 2
    http_status = 404
    errno = _errno.ENOENT


class AlreadyExists(CoppiceError):
    """{what} already exists: {detail}"""

    exit_code = 3
    http_status = 409
    errno = _errno.EEXIST


class InvalidArgument(CoppiceError):
    """{detail}"""

    exit_code = 4
    http_status = 400
    errno = _errno.EINVAL


class Busy(CoppiceError):
    """{detail}"""

    exit_code = 5
    http_status = 409
    errno = _errno.EBUSY


class NoSpace(CoppiceError):
    """{detail}"""

    exit_code = 6
    http_status = 507
    errno = _errno.ENOSPC


class ReadOnly(CoppiceError):
    """{detail}"""

    exit_code = 7
    http_status = 409
    errno = _errno.EPERM


class Corruption(CoppiceError):
    """{detail}"""

    exit_code = 8
    http_status = 500
    errno = _errno.EIO


class Unauthorized(CoppiceError):
    """Missing or wrong API token: send `Authorization: Bearer TOKEN` with the
    token in {path} (readable by the daemon's user only), or use the pool's
    Unix socket."""

    exit_code = 9
    http_status = 401
    errno = _errno.EACCES


class DaemonUnreachable(CoppiceError):
    """Cannot reach the Coppice daemon at {url}: {why}. Is `coppice serve`
    running? Unset COPPICE_URL to use the pool directly."""

    exit_code = 10
    http_status = 502
    errno = _errno.ECONNREFUSED


class DaemonError(CoppiceError):
    """The Coppice daemon at {url} answered {status}: {detail}"""

    exit_code = 11
    http_status = 502
    errno = _errno.EPROTO


class NotSupported(InvalidArgument):
    """{what} is not available in this daemon: {why}"""

    http_status = 501


class JobIncomplete(Busy):
    """Job {job} was {state}: {why}. `coppice` commands that started it pick
    up where it stopped when run again."""


class ProvisionIncomplete(CoppiceError):
    """{failed} of {requested} VMs failed and were rolled back; the others
    were provisioned. The summary above names each failure."""

    exit_code = 14
    http_status = 500


class InternalError(CoppiceError):
    """Internal error (request {request_id}): this is a bug in Coppice; the
    daemon's log has the details under that request id."""

    exit_code = 15
    http_status = 500
    errno = _errno.EIO


# Stable codes: hundreds by layer (0 core and daemon, 100 engine, 200 filer,
# 300 NBD, 400 dedup, 500 provisioner). Never renumber; retire a code with its class.
CATALOGUE: dict[int, str] = {
    1: "coppice.errors:CoppiceError",
    2: "coppice.errors:NotFound",
    3: "coppice.errors:AlreadyExists",
    4: "coppice.errors:InvalidArgument",
    5: "coppice.errors:Busy",
    6: "coppice.errors:NoSpace",
    7: "coppice.errors:ReadOnly",
    8: "coppice.errors:Corruption",
    9: "coppice.errors:Unauthorized",
    10: "coppice.errors:DaemonUnreachable",
    11: "coppice.errors:DaemonError",
    12: "coppice.daemon:ListenFailed",
    13: "coppice.errors:NotSupported",
    14: "coppice.errors:JobIncomplete",
    15: "coppice.errors:ProvisionIncomplete",
    16: "coppice.errors:InternalError",
    17: "coppice.api.errors:JobNotFound",
    18: "coppice.api.errors:JobNotCancellable",
    19: "coppice.api.errors:UnknownJobKind",
    20: "coppice.api.errors:ShuttingDown",
    21: "coppice.api.hypervisors:ConnectNotAllowed",
    22: "coppice.console.session:SignInRefused",
    23: "coppice.console.session:CsrfRefused",
    101: "coppice.engine.errors:PoolNotFound",
    102: "coppice.engine.errors:PoolExists",
    103: "coppice.engine.errors:PoolInUse",
    104: "coppice.engine.errors:VolumeNotFound",
    105: "coppice.engine.errors:VolumeExists",
    106: "coppice.engine.errors:SnapshotNotFound",
    107: "coppice.engine.errors:SnapshotExists",
    108: "coppice.engine.errors:ObjectNotFound",
    109: "coppice.engine.errors:ObjectExists",
    110: "coppice.engine.errors:SnapshotBusy",
    111: "coppice.engine.errors:BadName",
    112: "coppice.engine.errors:OutOfRange",
    113: "coppice.engine.errors:BlockCorrupt",
    114: "coppice.engine.errors:PoolFull",
    115: "coppice.engine.page_cache:MetadataCorruption",
    116: "coppice.engine.space:FileSystemFull",
    117: "coppice.engine.space:MetadataNoSpace",
    118: "coppice.engine.errors:PoolDamaged",
    201: "coppice.filer.errors:InvalidName",
    202: "coppice.filer.errors:BadSize",
    203: "coppice.filer.errors:BadPath",
    204: "coppice.filer.errors:BadOption",
    205: "coppice.filer.errors:VolumeBusy",
    206: "coppice.filer.errors:VolumeFull",
    207: "coppice.filer.errors:VolumeTooSmall",
    208: "coppice.filer.errors:SnapshotHasClones",
    209: "coppice.filer.errors:SnapshotsDisabled",
    210: "coppice.filer.errors:NotAClone",
    211: "coppice.filer.errors:LunNotFound",
    212: "coppice.filer.errors:LunExists",
    213: "coppice.filer.errors:LunBusy",
    214: "coppice.filer.errors:LunOffline",
    215: "coppice.filer.errors:LunTooSmall",
    216: "coppice.filer.errors:LunIdInUse",
    217: "coppice.filer.errors:LunIdCollision",
    218: "coppice.filer.errors:LunNotMapped",
    219: "coppice.filer.errors:LunAlreadyMapped",
    220: "coppice.filer.errors:BadLunId",
    221: "coppice.filer.errors:IgroupNotFound",
    222: "coppice.filer.errors:IgroupExists",
    223: "coppice.filer.errors:IgroupBusy",
    224: "coppice.filer.errors:InitiatorExists",
    225: "coppice.filer.errors:InitiatorNotFound",
    226: "coppice.filer.errors:BadInitiator",
    227: "coppice.filer.errors:BadSchedule",
    228: "coppice.filer.errors:SplitNotRunning",
    229: "coppice.filer.export_resolver:ExportNotFound",
    230: "coppice.backend.base:BackendUnsupported",
    231: "coppice.backend.base:ThinOnly",
    232: "coppice.backend.rbd:RbdWriteFailed",
    233: "coppice.backend.rbd:CephUnavailable",
    234: "coppice.backend.rbd:ImageNameTaken",
    235: "coppice.backend.rbd:CephPoolOwned",
    301: "coppice.nbd.server:NBDServerError",
    302: "coppice.nbd.server:ProtocolViolation",
    303: "coppice.nbd.tls:TLSSetupError",
    304: "coppice.nbd.commands:ShortRead",
    401: "coppice.dedup.config:BadSisSchedule",
    402: "coppice.dedup.config:SisNotEnabled",
    403: "coppice.dedup.scanner:ScanBusy",
    501: "coppice.provision.errors:GuestImageError",
    502: "coppice.provision.errors:KernelPackageUnavailable",
    503: "coppice.provision.errors:BadSeed",
    504: "coppice.provision.errors:BadDomainXML",
    505: "coppice.provision.errors:HypervisorError",
    506: "coppice.provision.errors:LibvirtUnavailable",
    507: "coppice.provision.errors:DomainNotFound",
    508: "coppice.provision.errors:DomainExists",
    509: "coppice.provision.errors:DomainTimeout",
    510: "coppice.provision.provisioning_errors:NotADatastore",
    511: "coppice.provision.provisioning_errors:DatastoreIsCopy",
    512: "coppice.provision.provisioning_errors:DatastoreNotAttached",
    513: "coppice.provision.provisioning_errors:BadPolicy",
    514: "coppice.provision.provisioning_errors:TemplateNotFound",
    515: "coppice.provision.provisioning_errors:TemplateExists",
    516: "coppice.provision.provisioning_errors:TemplateBusy",
    517: "coppice.provision.provisioning_errors:BadImage",
    518: "coppice.provision.provisioning_errors:CustSpecNotFound",
    519: "coppice.provision.provisioning_errors:CustSpecExists",
    520: "coppice.provision.provisioning_errors:BadCustSpec",
    521: "coppice.provision.provisioning_errors:SSHKeyUnreadable",
    522: "coppice.provision.provisioning_errors:AddressPoolExhausted",
    523: "coppice.provision.provisioning_errors:BadNamePattern",
    524: "coppice.provision.provisioning_errors:BadCount",
    525: "coppice.provision.provisioning_errors:BadVMName",
    526: "coppice.provision.provisioning_errors:VMExists",
    527: "coppice.provision.provisioning_errors:VMNotFound",
    528: "coppice.provision.provisioning_errors:VMRunning",
    529: "coppice.provision.provisioning_errors:StageFailed",
    530: "coppice.provision.provisioning_errors:InjectedFailure",
    531: "coppice.provision.compare:CompareTooBig",
    532: "coppice.provision.provisioning_errors:BadRecord",
    533: "coppice.provision.errors:HostNotSetUp",
    534: "coppice.provision.provisioning_errors:HostPathRefused",
    535: "coppice.provision.generalize:GeneralizeError",
    536: "coppice.provision.generalize:UnknownOperation",
    537: "coppice.provision.provisioning_errors:DiskPathUnsupported",
}
_CODE_OF = {where.rsplit(":", 1)[1]: code for code, where in CATALOGUE.items()}


def all_classes() -> list[type]:
    """Every CoppiceError class: every module of the package imported (a module
    whose optional dependency is missing is skipped)."""
    import importlib
    import pkgutil

    root = os.path.dirname(os.path.abspath(__file__))
    for info in pkgutil.walk_packages([root], "coppice."):
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - an optional backend's library may be absent here
            pass
    for dirpath, _dirs, files in os.walk(root):  # namespace packages (no __init__.py) too
        rel = os.path.relpath(dirpath, os.path.dirname(root)).replace(os.sep, ".")
        for f in files:
            if f.endswith(".py") and f != "__init__.py":
                try:
                    importlib.import_module(f"{rel}.{f[:-3]}")
                except Exception:  # noqa: BLE001
                    pass
    return list(_loaded_subclasses())


def by_code(code) -> type | None:
    """The error class with catalogue code ``code`` (importing only its module), or None."""
    where = CATALOGUE.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
    if where is None:
        return None
    import importlib

    module, name = where.rsplit(":", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _loaded_subclasses():
    seen, todo = set(), [CoppiceError]
    while todo:
        c = todo.pop()
        if c not in seen:
            seen.add(c)
            yield c
            todo.extend(c.__subclasses__())


def rebuild(code, message: str, exit_code: int | None = None, http_status: int = 400) -> CoppiceError:
    """The error a daemon reported (catalogue code and message), as the same
    class with the same message and exit code. An unknown code (a newer
    daemon) keeps the message and exit code on the nearest general class."""
    cls = by_code(code)
    if cls is None:
        cls = {404: NotFound, 409: Busy, 401: Unauthorized}.get(
            http_status, InvalidArgument if http_status < 500 else CoppiceError
        )
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.kwargs, exc.args_ = {}, ()
    if exit_code is not None and exit_code != cls.exit_code:
        exc.exit_code = exit_code
    return exc
