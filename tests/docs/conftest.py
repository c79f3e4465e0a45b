# The README's provisioning block needs the tiny template's disk and a running qemu:///system.
from tests.provision.conftest import nbd_tls_dirs, system_libvirt, tiny_template  # noqa: F401
