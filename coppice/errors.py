"""The root of every error Coppice raises on purpose, and their catalogue.

Contract: each error class's docstring is its message template; the message
says what is wrong and what to do about it. ``exit_code`` is what the CLI
exits with, ``http_status`` what the REST API answers, ``errno`` what the NBD
target sends when the error reaches a client. Anything that is not a
CoppiceError reaching the top is a bug.

The catalogue (``CATALOGUE``: stable code -> class name) gives every error
class one number that never changes and never is reused; the REST API
sends it (``code``) and ``rebuild`` turns it back into the same class on
the client, whatever the class is called or where it lives. Names are
unique across layers; each exit code is declared by one class (its
subclasses share it). ``tests/test_error_catalogue.py`` walks every class
and holds these rules; ``scripts/errors_doc.py`` writes docs/errors.md
from it. A new error class takes the next free code of its layer.
"""

from __future__ import annotations

import errno as _errno


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
    1: "CoppiceError",
    2: "NotFound",
    3: "AlreadyExists",
    4: "InvalidArgument",
    5: "Busy",
    6: "NoSpace",
    7: "ReadOnly",
    8: "Corruption",
    9: "Unauthorized",
    10: "DaemonUnreachable",
    11: "DaemonError",
    12: "ListenFailed",
    13: "NotSupported",
    14: "JobIncomplete",
    15: "ProvisionIncomplete",
    16: "InternalError",
    17: "JobNotFound",
    18: "JobNotCancellable",
    19: "UnknownJobKind",
    20: "ShuttingDown",
    21: "ConnectNotAllowed",
    101: "PoolNotFound",
    102: "PoolExists",
    103: "PoolInUse",
    104: "VolumeNotFound",
    105: "VolumeExists",
    106: "SnapshotNotFound",
    107: "SnapshotExists",
    108: "ObjectNotFound",
    109: "ObjectExists",
    110: "SnapshotBusy",
    111: "BadName",
    112: "OutOfRange",
    113: "BlockCorrupt",
    114: "PoolFull",
    115: "MetadataCorruption",
    116: "FileSystemFull",
    117: "MetadataNoSpace",
    118: "PoolDamaged",
    201: "InvalidName",
    202: "BadSize",
    203: "BadPath",
    204: "BadOption",
    205: "VolumeBusy",
    206: "VolumeFull",
    207: "VolumeTooSmall",
    208: "SnapshotHasClones",
    209: "SnapshotsDisabled",
    210: "NotAClone",
    211: "LunNotFound",
    212: "LunExists",
    213: "LunBusy",
    214: "LunOffline",
    215: "LunTooSmall",
    216: "LunIdInUse",
    217: "LunIdCollision",
    218: "LunNotMapped",
    219: "LunAlreadyMapped",
    220: "BadLunId",
    221: "IgroupNotFound",
    222: "IgroupExists",
    223: "IgroupBusy",
    224: "InitiatorExists",
    225: "InitiatorNotFound",
    226: "BadInitiator",
    227: "BadSchedule",
    228: "SplitNotRunning",
    229: "ExportNotFound",
    301: "NBDServerError",
    302: "ProtocolViolation",
    303: "TLSSetupError",
    304: "ShortRead",
    401: "BadSisSchedule",
    402: "SisNotEnabled",
    403: "ScanBusy",
    501: "GuestImageError",
    502: "KernelPackageUnavailable",
    503: "BadSeed",
    504: "BadDomainXML",
    505: "HypervisorError",
    506: "LibvirtUnavailable",
    507: "DomainNotFound",
    508: "DomainExists",
    509: "DomainTimeout",
    510: "NotADatastore",
    511: "DatastoreIsCopy",
    512: "DatastoreNotAttached",
    513: "BadPolicy",
    514: "TemplateNotFound",
    515: "TemplateExists",
    516: "TemplateBusy",
    517: "BadImage",
    518: "CustSpecNotFound",
    519: "CustSpecExists",
    520: "BadCustSpec",
    521: "SSHKeyUnreadable",
    522: "AddressPoolExhausted",
    523: "BadNamePattern",
    524: "BadCount",
    525: "BadVMName",
    526: "VMExists",
    527: "VMNotFound",
    528: "VMRunning",
    529: "StageFailed",
    530: "InjectedFailure",
    531: "CompareTooBig",
    532: "BadRecord",
    533: "HostNotSetUp",
    534: "HostPathRefused",
}
_CODE_OF = {name: code for code, name in CATALOGUE.items()}

# The modules that define error classes: imported only to rebuild an error
# from its code (so a CLI that gets no error loads none of them).
ERROR_MODULES = (
    "coppice.api.errors",
    "coppice.api.hypervisors",
    "coppice.daemon",
    "coppice.engine",
    "coppice.engine.space",
    "coppice.filer.errors",
    "coppice.filer.export_resolver",
    "coppice.nbd.server",
    "coppice.nbd.commands",
    "coppice.nbd.tls",
    "coppice.dedup",
    "coppice.provision.errors",
    "coppice.provision.provisioning_errors",
    "coppice.provision.compare",
)


def all_classes() -> list[type]:
    """Every CoppiceError class, with every module of ``ERROR_MODULES`` imported."""
    import importlib

    for m in ERROR_MODULES:
        importlib.import_module(m)
    out, todo = [], [CoppiceError]
    while todo:
        c = todo.pop()
        if c not in out:
            out.append(c)
            todo.extend(c.__subclasses__())
    return out


def by_code(code) -> type | None:
    """The error class with catalogue code ``code``, or None."""
    name = CATALOGUE.get(code) if isinstance(code, int) else None
    if name is None:
        return None
    for c in _loaded_subclasses():
        if c.__name__ == name:
            return c
    return next((c for c in all_classes() if c.__name__ == name), None)


def _loaded_subclasses():
    todo = [CoppiceError]
    while todo:
        c = todo.pop()
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
