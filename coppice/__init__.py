"""Coppice: a copy-on-write filer and rapid-cloning VM provisioner.

Layers (each a subpackage; imports point down only):

    cli/ api/      people and programs
    provision/     templates, datastores, libvirt registration
    filer/         volumes, snapshots, clones, LUNs, igroups, maps
    nbd/           the NBD block target over a small block-device interface
    dedup/         fingerprints, scanner, inline path
    engine/        the copy-on-write block store
"""

__version__ = "0.1.0"
