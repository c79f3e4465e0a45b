"""The provisioner's pool-wide records, in the pool's kv store.

Contract: one scope per kind of record, each value a JSON-able dict; every
write is one pool transaction (and joins an enclosing
``filer.transaction()``). These records are an index: the truth about a VM's
identity is the VM folder inside its datastore (``datastore``); the index
makes ``vm list`` and up-front validation O(VMs) without opening volumes.

Scopes:

    provision.template    name -> {volume, slot, base_snapshot, ...}
    provision.custspec    name -> spec dict (``custspec.CustSpec``)
    provision.datastore   volume -> {uuid, name, attached} (attached datastores)
    provision.vm          name -> {volume, slot, template, base_snapshot, uri, uuid, mac, ...}
    provision.ipalloc     "<spec>/<address>" -> vm name
    provision.policy      connect URI -> "auto" | "ask" | "off"
"""

from __future__ import annotations

TEMPLATE = "provision.template"
CUSTSPEC = "provision.custspec"
DATASTORE = "provision.datastore"
VM = "provision.vm"
IPALLOC = "provision.ipalloc"
POLICY = "provision.policy"


def get(filer, scope: str, key: str, default=None):
    return filer.kv_get(scope, key, default)


def put(filer, scope: str, key: str, value) -> None:
    filer.kv_put(scope, key, value)


def delete(filer, scope: str, key: str) -> None:
    filer.kv_delete(scope, key)


def items(filer, scope: str) -> list[tuple[str, object]]:
    return filer.kv_items(scope)
