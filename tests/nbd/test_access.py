"""Access control: the resolver decides, per initiator, what is listed and
what opens; a denied export looks exactly like a missing one."""

import json

import nbd
import pytest

from coppice.nbd import protocol as P
from tests.nbd.conftest import run
from tests.nbd.rawclient import RawClient


def local_only(name, initiator):
    # "disk" is mapped only to the Unix-socket initiator; "other" to everyone.
    return name == "other" or initiator.unix


def test_denied_initiator_cannot_list_or_open(serve):
    # Over TCP (address 127.0.0.1) only "other" is listed and opens.
    s = serve(allow=local_only)
    info = json.loads(run("nbdinfo", "--list", "--json", s.uri("other")).stdout)
    assert [e["export-name"] for e in info["exports"]] == ["other"]
    h = nbd.NBD()
    with pytest.raises(nbd.Error):
        h.connect_uri(s.uri("disk"))
    p = run("qemu-img", "info", s.uri("disk"), check=False)
    assert p.returncode != 0


def test_denied_open_is_err_unknown_like_a_missing_name(serve):
    # The reply to GO on a denied export is identical to one on a missing export.
    s = serve(allow=local_only)
    replies = []
    for name in (b"disk", b"no-such-export"):
        c = RawClient(s.port)
        c.greeting()
        c.option(P.OPT_GO, len(name).to_bytes(4, "big") + name + b"\0\0")
        _opt, rep, _msg = c.reply()
        replies.append(rep)
        c.close()
    assert replies == [P.REP_ERR_UNKNOWN, P.REP_ERR_UNKNOWN]


def test_allowed_initiator_lists_and_opens(serve):
    # The Unix-socket initiator sees and opens "disk".
    s = serve(allow=local_only)
    info = json.loads(run("nbdinfo", "--list", "--json", s.unix_uri("disk")).stdout)
    assert {e["export-name"] for e in info["exports"]} == {"disk", "ro", "other"}
    run("qemu-io", "-f", "raw", "-c", "write -P 9 0 4k", s.unix_uri("disk"))


def test_resolver_sees_peer_address_and_unix_flag(serve):
    s = serve()
    run("nbdinfo", "--list", s.uri())
    run("nbdinfo", "--list", s.unix_uri())
    seen = s.resolver.seen
    assert any(i.address == "127.0.0.1" and not i.unix and not i.tls and i.name is None for i in seen)
    assert any(i.unix and i.address is None for i in seen)


def test_denied_meta_context_query(serve):
    # SET_META_CONTEXT naming a denied export is refused like an unknown one.
    s = serve(allow=local_only)
    c = RawClient(s.port)
    c.greeting()
    c.option(P.OPT_STRUCTURED_REPLY)
    assert c.reply()[1] == P.REP_ACK
    q = b"base:allocation"
    c.option(P.OPT_SET_META_CONTEXT, b"\0\0\0\4disk" + (1).to_bytes(4, "big") + len(q).to_bytes(4, "big") + q)
    assert c.reply()[1] == P.REP_ERR_UNKNOWN
