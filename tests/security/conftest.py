"""Fixtures of the host-safety tests: a filer on a fresh pool and libvirt's
test driver (the provisioner's business logic, no guest booted)."""

from tests.provision.prov_helpers import filer, hv, image, tpl  # noqa: F401
