"""Errors of the provisioner's business logic (datastores, templates,
customization specs, batch provisioning, VM lifecycle): each class's
docstring is the message, and says what to do.

Contract: every error ``datastore``, ``template``, ``custspec``,
``provisioner`` and ``vm`` raise on purpose is one of these (or a filer or
hypervisor error, which are ``CoppiceError`` too). Validation errors are
raised before anything is created.
"""

from __future__ import annotations

from ..errors import AlreadyExists, Busy, CoppiceError, InvalidArgument, NotFound


class NotADatastore(NotFound):
    """Volume {volume} holds no datastore descriptor; `coppice datastore show`
    lists the datastores (a template import or `vm provision` creates them)."""


class DatastoreIsCopy(Busy):
    """Datastore {name} on volume {volume} is a copy: its signature {uuid} is
    already known ({other}). Resignature it first (`coppice datastore
    resignature {volume}`) or attach with resignature=auto."""


class DatastoreNotAttached(NotFound):
    """Datastore on volume {volume} is not attached; `coppice datastore
    attach {volume}` attaches it (resignaturing a copy by policy)."""


class BadPolicy(InvalidArgument):
    """Invalid resignature policy {policy!r}: use auto, ask or off."""


class TemplateNotFound(NotFound):
    """Template {name} not found; `coppice template list` lists the templates
    and `coppice template import NAME --image FILE` makes one."""


class TemplateExists(AlreadyExists):
    """Template {name} already exists; choose another name or delete it
    (`coppice template delete {name}`)."""


class TemplateBusy(Busy):
    """Template {name} is in use: {count} VM(s) depend on it ({vms}); destroy
    them first (`coppice vm destroy NAME`)."""


class BadImage(InvalidArgument):
    """Cannot import image {path}: {detail}"""


class CustSpecNotFound(NotFound):
    """Customization spec {name} not found; `coppice custspec list` lists
    them."""


class CustSpecExists(AlreadyExists):
    """Customization spec {name} already exists; choose another name or delete
    it first (`coppice custspec delete {name}`)."""


class BadCustSpec(InvalidArgument):
    """Invalid customization spec: {detail}"""


class SSHKeyUnreadable(InvalidArgument):
    """Cannot read SSH public key file {path}: {why}. Give a readable public
    key file (e.g. ~/.ssh/id_ed25519.pub)."""


class AddressPoolExhausted(Busy):
    """The static address pool {pool} of customization spec {spec} has no free
    address left for VM {vm}; give the spec a bigger pool or destroy VMs."""


class BadNamePattern(InvalidArgument):
    """Invalid VM name pattern {pattern!r}: {why}. Write the name with {{n}}
    for the VM's number, zero-padded as {{n:03}}, e.g. 'web{{n:03}}'."""


class BadCount(InvalidArgument):
    """Invalid VM count {count}: {why}."""


class BadVMName(InvalidArgument):
    """Invalid VM name {name!r}: {why}. VM names use letters, digits, '-' and
    '_', start with a letter, and are at most 63 characters."""


class VMExists(AlreadyExists):
    """VM {name} already exists ({where}); choose another name or pattern."""


class VMNotFound(NotFound):
    """VM {name} not found; `coppice vm list` lists the VMs Coppice made."""


class VMRunning(Busy):
    """VM {name} is running; shut it down first or pass --force."""


class DiskPathUnsupported(InvalidArgument):
    """--disk-path {disk_path} needs a pool whose LUN data lives in Ceph RBD;
    this pool keeps it in {backend}. Use --disk-path nbd (the default: the
    VMs' disks are served by `coppice serve`), or provision from a pool made
    with `coppice pool create --backend rbd`."""


class StageFailed(CoppiceError):
    """VM {vm}: stage {stage} failed: {detail}"""


class InjectedFailure(CoppiceError):
    """Injected failure at stage {stage} (test hook)"""


class BadRecord(CoppiceError):
    """The stored {what} record {name!r} is damaged: {why}. Coppice refuses to
    use it (a value from a record never becomes a host path unchecked);
    `coppice vm destroy` or re-importing the template replaces it."""

    http_status = 409


class HostPathRefused(InvalidArgument):
    """Host file {path} refused: {why}."""
