"""TLS material for the NBD target: a CA, the server's certificate, one
client certificate per initiator, and the server's ``ssl.SSLContext``.

Contract: files are laid out the way QEMU's ``tls-creds-x509`` object (and
libnbd's ``tls-certificates=DIR``) reads them, so the same directories feed
``qemu-img --object tls-creds-x509,dir=...``, ``nbdinfo nbds://...`` and
``coppice serve --tls-dir``::

    TLS_DIR/ca-cert.pem      CA certificate (clients and server trust it)
    TLS_DIR/ca-key.pem       CA private key (mode 0600; signs new clients)
    TLS_DIR/server-cert.pem  server certificate, SAN 127.0.0.1, ::1,
                             localhost and this host's name
    TLS_DIR/server-key.pem   server private key (0600)
    CLIENT_DIR/ca-cert.pem      copy of the CA certificate
    CLIENT_DIR/client-cert.pem  CN = the initiator name
    CLIENT_DIR/client-key.pem   (0600)

An initiator is authenticated by its certificate chaining to the CA; its
name is the certificate's subject CN (the server reads it back with
``coppice.nbd.server``). Existing files are never overwritten unless
``force=True``. Functions are pure file operations, safe from any thread.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coppice.errors import AlreadyExists, CoppiceError, NotFound

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
CLIENT_CERT = "client-cert.pem"
CLIENT_KEY = "client-key.pem"

_VALID_DAYS = 3650
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


class TLSSetupError(CoppiceError):
    """TLS setup failed: {detail}"""


def _key():
    # P-256: fast, and accepted by GnuTLS (QEMU, libnbd) and OpenSSL alike.
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes, private: bool, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise AlreadyExists(what="TLS file", detail=f"{path} (pass force=True to replace it)")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: x509.Name, issuer: x509.Name, public_key):
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
    )


def _load_ca(tls_dir: str):
    try:
        with open(os.path.join(tls_dir, CA_CERT), "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(tls_dir, CA_KEY), "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError as e:
        raise NotFound(what="TLS CA", detail=f"{e.filename}: run create_ca({tls_dir!r}) first") from e
    return ca_cert, ca_key


def create_ca(tls_dir: str, common_name: str = "Coppice NBD CA", force: bool = False) -> str:
    """Create ``ca-cert.pem`` and ``ca-key.pem`` in ``tls_dir``; returns the
    certificate's path."""
    os.makedirs(tls_dir, exist_ok=True)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(os.path.join(tls_dir, CA_KEY), _pem_key(key), True, force)
    path = os.path.join(tls_dir, CA_CERT)
    _write(path, _pem_cert(cert), False, force)
    return path


def _leaf(tls_dir: str, common_name: str, sans: list, server: bool):
    ca_cert, ca_key = _load_ca(tls_dir)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    b = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def create_server_cert(
    tls_dir: str, hostnames: list[str] | None = None, addresses: list[str] | None = None, force: bool = False
) -> str:
    """Create ``server-cert.pem``/``server-key.pem`` signed by the CA in
    ``tls_dir``, valid for 127.0.0.1, ::1, localhost, this host's name and
    any extra ``hostnames``/``addresses``; returns the certificate's path."""
    names = ["localhost", socket.gethostname()] + list(hostnames or [])
    ips = ["127.0.0.1", "::1"] + list(addresses or [])
    sans: list = []
    for n in dict.fromkeys(names):
        if n and _HOSTNAME_RE.match(n):
            sans.append(x509.DNSName(n))
    for a in dict.fromkeys(ips):
        sans.append(x509.IPAddress(ipaddress.ip_address(a)))
    cert, key = _leaf(tls_dir, socket.gethostname() or "localhost", sans, server=True)
    _write(os.path.join(tls_dir, SERVER_KEY), _pem_key(key), True, force)
    path = os.path.join(tls_dir, SERVER_CERT)
    _write(path, _pem_cert(cert), False, force)
    return path


def create_client_cert(tls_dir: str, initiator: str, client_dir: str, force: bool = False) -> str:
    """Create a client certificate whose subject CN is ``initiator`` in
    ``client_dir`` (with a copy of the CA certificate, as QEMU's
    ``tls-creds-x509,endpoint=client`` expects); returns ``client_dir``."""
    if not initiator or len(initiator) > 64:
        raise TLSSetupError(
            detail=f"initiator name {initiator!r} must be 1..64 characters (an X.509 CN limit)"
        )
    os.makedirs(client_dir, exist_ok=True)
    sans = [x509.DNSName(initiator)] if _HOSTNAME_RE.match(initiator) else []
    cert, key = _leaf(tls_dir, initiator, sans, server=False)
    with open(os.path.join(tls_dir, CA_CERT), "rb") as f:
        ca_pem = f.read()
    _write(os.path.join(client_dir, CA_CERT), ca_pem, False, force)
    _write(os.path.join(client_dir, CLIENT_KEY), _pem_key(key), True, force)
    _write(os.path.join(client_dir, CLIENT_CERT), _pem_cert(cert), False, force)
    return client_dir


def init_tls_dir(tls_dir: str, hostnames: list[str] | None = None) -> str:
    """CA and server certificate in one step, keeping any that exist."""
    if not os.path.exists(os.path.join(tls_dir, CA_CERT)):
        create_ca(tls_dir)
    if not os.path.exists(os.path.join(tls_dir, SERVER_CERT)):
        create_server_cert(tls_dir, hostnames=hostnames)
    return tls_dir


def server_context(tls_dir: str, require_client_cert: bool = False) -> ssl.SSLContext:
    """The server's SSLContext from ``tls_dir``: TLS 1.2+, the server
    certificate, and client certificates verified against the CA —
    optional (a client without one has no initiator name) or required."""
    paths = {n: os.path.join(tls_dir, n) for n in (CA_CERT, SERVER_CERT, SERVER_KEY)}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise NotFound(
            what="TLS file", detail=f"{', '.join(missing)}: create them with coppice.nbd.tls.init_tls_dir()"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(paths[SERVER_CERT], paths[SERVER_KEY])
        ctx.load_verify_locations(cafile=paths[CA_CERT])
    except (ssl.SSLError, OSError) as e:
        raise TLSSetupError(detail=f"cannot load the certificates in {tls_dir}: {e}") from e
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    # Session tickets would be sent after the handshake, interleaved with
    # NBD replies; clients do not resume NBD sessions, so skip them.
    ctx.num_tickets = 0
    return ctx
