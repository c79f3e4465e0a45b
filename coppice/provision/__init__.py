"""The provisioner: templates, seeds, domain definitions and the libvirt connection.

Only ``hypervisor`` imports libvirt; everything else here is pure Python that
a test can run without a hypervisor.
"""
