"""Filer errors: each class's docstring is the message, and says what to do.

Contract: every error the filer raises on purpose is one of these (or an
engine error, which is a ``CoppiceError`` too); the CLI prints the message
and exits with ``exit_code``, the REST API answers ``http_status``. An error
is raised before anything changes, or inside a pool transaction that rolls
back, so a refused command changes nothing.
"""

from __future__ import annotations

from ..engine import SnapshotExists, SnapshotNotFound, VolumeExists, VolumeNotFound  # noqa: F401  (one class per error)
from ..errors import AlreadyExists, Busy, InvalidArgument, NoSpace, NotFound


class InvalidName(InvalidArgument):
    """Invalid {what} name {name!r}: {why}. Names use letters, digits{extra}
    and '_', start with a letter or '_', and are at most 255 characters."""


class BadSize(InvalidArgument):
    """Invalid size {text!r}: {why}. Give a number with an optional unit:
    b, k, m, g, t, p (powers of 1024), e.g. 512m, 20g, 1t."""


class BadPath(InvalidArgument):
    """Invalid LUN path {path!r}: {why}. LUN paths look like /vol/VOLUME/LUN
    (or /vol/VOLUME/.snapshot/SNAPSHOT/LUN for a snapshot's LUN)."""


class BadOption(InvalidArgument):
    """{detail}"""


class VolumeBusy(Busy):
    """Volume {name} is busy: {why}."""


class VolumeFull(NoSpace):
    """Volume {volume} is full: {what} needs {need} more but only {avail} of its
    {size} is available; nothing was written. Grow it with `coppice vol size
    {volume} SIZE`, delete snapshots, or make room in its LUNs."""


class VolumeTooSmall(InvalidArgument):
    """Volume {volume} cannot be {size}: {why}."""


class SnapshotHasClones(Busy):
    """snapshot is busy: clone {clones} depends on it (snapshot {snap} of
    volume {volume}); split the clone with `coppice vol clone split start
    {first}` or destroy it first."""


class SnapshotsDisabled(Busy):
    """Volume {volume} has nosnap on: snapshots are refused. Turn it off with
    `coppice vol options {volume} nosnap off`."""


class NotAClone(InvalidArgument):
    """Volume {volume} is not a clone (or was already split); nothing to do."""


class LunNotFound(NotFound):
    """LUN {path} not found; `coppice lun show` lists the LUNs."""


class LunExists(AlreadyExists):
    """LUN {path} already exists; choose another name."""


class LunBusy(Busy):
    """LUN {path} is busy: {why}."""


class LunOffline(Busy):
    """LUN {path} is offline{reason}; bring it online with `coppice lun online
    {path}`."""


class LunTooSmall(InvalidArgument):
    """LUN {path} cannot shrink to {size}: it holds data up to {end}. Move the
    data first, or pass -f to discard everything past the new end."""


class LunIdInUse(Busy):
    """LUN ID {lun_id} is already in use in igroup {igroup} by LUN {holder};
    choose another ID or omit it to take the lowest free one."""


class LunIdCollision(Busy):
    """LUN {path} cannot go online: {collisions}. Unmap it (`coppice lun unmap
    {path} IGROUP`) and map it again with a free ID first."""


class LunNotMapped(NotFound):
    """LUN {path} is not mapped to igroup {igroup}."""


class LunAlreadyMapped(AlreadyExists):
    """LUN {path} is already mapped to igroup {igroup} as LUN ID {lun_id};
    unmap it first to change the ID."""


class BadLunId(InvalidArgument):
    """Invalid LUN ID {lun_id!r}: use a whole number from 0 to 4095."""


class IgroupNotFound(NotFound):
    """Initiator group {name} not found; `coppice igroup show` lists them."""


class IgroupExists(AlreadyExists):
    """Initiator group {name} already exists; choose another name."""


class IgroupBusy(Busy):
    """Initiator group {name} is busy: LUNs are mapped to it ({luns}); unmap
    them first or pass -f."""


class InitiatorExists(AlreadyExists):
    """Initiator {initiator} is already in igroup {name}."""


class InitiatorNotFound(NotFound):
    """Initiator {initiator} is not in igroup {name}."""


class BadInitiator(InvalidArgument):
    """Invalid initiator {initiator!r}: {why}. Give an initiator name (iqn.…,
    a TLS certificate CN or PSK identity) or an IP address or network
    (192.0.2.7, 192.0.2.0/24, 2001:db8::/32)."""


class BadSchedule(InvalidArgument):
    """Invalid snapshot schedule {text!r}: {why}. Use `weeks days hours[@list]`,
    e.g. `0 2 6@8,12,16,20`, or `0` to disable."""


class SplitNotRunning(NotFound):
    """No clone split is running for volume {volume}."""
