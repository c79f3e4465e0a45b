"""Provisioner errors: each class's docstring is the message, and says what to do.

Contract: every error the hypervisor-facing half of the provisioner
(guest image, seed, domain XML, libvirt connection) raises on purpose is one
of these; all are ``CoppiceError`` subclasses, so the CLI prints one line and
exits with ``exit_code``, the REST API answers ``http_status``.
"""

from __future__ import annotations

from ..errors import AlreadyExists, CoppiceError, InvalidArgument, NotFound


class GuestImageError(CoppiceError):
    """Cannot build the tiny guest template: {detail}"""


class KernelPackageUnavailable(GuestImageError):
    """Cannot get the guest kernel package {package}: {detail}. Check that the
    Debian mirror in /etc/apt/sources.list* answers (`apt-get update`), or pass
    a downloaded linux-image-*-cloud-amd64 .deb as kernel_deb."""


class BadSeed(InvalidArgument):
    """Invalid cloud-init seed: {detail}"""


class BadDomainXML(InvalidArgument):
    """Invalid libvirt domain definition: {detail}"""


class HypervisorError(CoppiceError):
    """libvirt at {uri} failed: {detail}"""

    exit_code = 13
    http_status = 502


class LibvirtUnavailable(HypervisorError):
    """Cannot reach libvirt at {uri}: {detail}"""


class HostNotSetUp(LibvirtUnavailable):
    """libvirt at {uri} is not set up on this host: missing {missing}. Run `bash scripts/install.sh`
    as root: it sets the host up and says what it changes (Coppice changes nothing behind your back)."""


class DomainNotFound(NotFound):
    """Domain {name} is not defined in libvirt at {uri}; `virsh -c {uri} list
    --all` lists the defined domains."""


class DomainExists(AlreadyExists):
    """A domain named {name} is already defined in libvirt at {uri}; choose
    another name, or undefine it first (`virsh -c {uri} undefine {name}`)."""


class DomainTimeout(HypervisorError):
    """Domain {name} at {uri} did not shut off within {timeout} s (state:
    {state}); see its serial log, or destroy it (`virsh -c {uri} destroy
    {name}`)."""
