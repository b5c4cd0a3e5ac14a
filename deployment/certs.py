"""A private certificate authority and the national SuperLink's TLS certificate.

The national unit runs one SuperLink. Its Fleet, Control and Runtime APIs (one HTTPS port in
flwr 1.41) use a server certificate issued by a private CA made here; every force's SuperNode
and the operator's ``flwr`` CLI trust that CA only (``--root-certificates ca.pem`` /
``root-certificates`` in the Flower configuration), so a machine that merely answers on the
SuperLink's address cannot impersonate it.

Files written into one folder (``anprfed deploy certs DIR --host ...``):

| file | who holds it | secret |
| --- | --- | --- |
| ``ca.pem`` | everyone: SuperLink, every force, the operator's CLI | no |
| ``ca.key`` | nobody online: move it to offline storage after issuing | **yes** |
| ``server.pem`` | the SuperLink host | no |
| ``server.key`` | the SuperLink host only | **yes** |

Keys are ECDSA P-384. Secret files are written with mode 0600. The CA key is encrypted with a
passphrase when one is given (``ANPRFED_CA_PASSPHRASE`` for the CLI). The server certificate's
subject alternative names are exactly the hosts given: DNS names and IP addresses the forces and
the CLI use to reach the SuperLink (TLS checks the name, so ``127.0.0.1`` and ``localhost`` are
different names).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deployment.files import (
    PUBLIC_MODE,
    SECRET_MODE,
    DeployFileError,
    read_file,
    refuse_existing,
    write_file,
)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"

DEFAULT_CA_DAYS = 3650
DEFAULT_SERVER_DAYS = 397  # the CA/Browser Forum's ceiling for server certificates
DEFAULT_CA_NAME = "anprfed national SuperLink CA"
DEFAULT_ORGANISATION = "anprfed"
_CURVE = ec.SECP384R1
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_BIND_ONLY = {ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")}


class CertificateError(ValueError):
    """Bad certificate input (a host, a validity, a CA that does not match its key)."""


Host = str | ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TlsFiles:
    """Where the TLS material of one deployment lives (``DIR/ca.pem`` and so on)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate: public, given to every SuperNode and to the ``flwr`` CLI."""
        return self.directory / CA_CERT

    @property
    def ca_key(self) -> Path:
        """The CA private key: secret, kept offline once the server certificate is issued."""
        return self.directory / CA_KEY

    @property
    def server_cert(self) -> Path:
        """The SuperLink's certificate (``--ssl-certfile``)."""
        return self.directory / SERVER_CERT

    @property
    def server_key(self) -> Path:
        """The SuperLink's private key (``--ssl-keyfile``): secret, SuperLink host only."""
        return self.directory / SERVER_KEY

    def all(self) -> tuple[Path, Path, Path, Path]:
        """The four files, CA first."""
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key)


@dataclass(frozen=True)
class CertificateSummary:
    """What a certificate says, for printing and checks (no key material)."""

    path: Path
    subject: str
    issuer: str
    is_ca: bool
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    sha256: str  # fingerprint of the DER certificate, colon-free hex


def parse_hosts(hosts: Sequence[str]) -> list[Host]:
    """Validate SuperLink host names: IP addresses become ``ip_address`` objects.

    Raises :class:`CertificateError` for an empty list, an empty or malformed name, or a
    wildcard bind address (``0.0.0.0``/``::`` are where a server listens, not a name a client
    can check).
    """
    if not hosts:
        raise CertificateError("give at least one --host the SuperNodes use to reach the SuperLink")
    parsed: list[Host] = []
    for raw in hosts:
        host = raw.strip()
        if not host:
            raise CertificateError("empty --host value")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is None:
            name = host.rstrip(".").lower()
            labels = name.split(".")
            if labels and labels[0] == "*":
                labels = labels[1:]
            if not labels or len(name) > 253 or not all(_DNS_LABEL.match(p) for p in labels):
                raise CertificateError(f"--host {host!r} is neither an IP address nor a DNS name")
            if name not in parsed:
                parsed.append(name)
            continue
        if address in _BIND_ONLY:
            raise CertificateError(
                f"--host {host!r} is a bind-all address; give the address clients connect to"
            )
        if address not in parsed:
            parsed.append(address)
    return parsed


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _check_days(days: int, what: str) -> None:
    if days < 1:
        raise CertificateError(f"{what} validity must be at least 1 day, got {days}")


def create_ca(
    common_name: str = DEFAULT_CA_NAME, days: int = DEFAULT_CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed CA (P-384) that may sign server certificates only (path length 0)."""
    _check_days(days, "CA")
    key = ec.generate_private_key(_CURVE())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEFAULT_ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    start = _now() - dt.timedelta(minutes=5)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    days: int = DEFAULT_SERVER_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new SuperLink key and certificate signed by the CA, valid for exactly ``hosts``."""
    _check_days(days, "server certificate")
    if ca_cert.public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise CertificateError("the CA key does not belong to the CA certificate")
    names = parse_hosts(hosts)
    key = ec.generate_private_key(_CURVE())
    public = key.public_key()
    sans: list[x509.GeneralName] = [
        x509.IPAddress(n) if not isinstance(n, str) else x509.DNSName(n) for n in names
    ]
    start = _now() - dt.timedelta(minutes=5)
    not_after = min(start + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEFAULT_ORGANISATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, str(names[0])),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ca(
    files: TlsFiles, passphrase: bytes | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA key and certificate from ``files`` (to issue a new server certificate)."""
    cert_bytes = read_file(files.ca_cert, "CA certificate")
    key_bytes = read_file(files.ca_key, "CA key")
    try:
        cert = x509.load_pem_x509_certificate(cert_bytes)
    except ValueError:
        raise CertificateError(f"{files.ca_cert} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_bytes, password=passphrase or None)
    except TypeError:
        raise CertificateError(
            f"{files.ca_key} is encrypted: set the CA passphrase (ANPRFED_CA_PASSPHRASE)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(
            f"{files.ca_key} cannot be loaded (wrong passphrase or not a PEM key)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{files.ca_key} is not an EC key")
    return key, cert


def write_tls_material(
    directory: Path,
    hosts: Sequence[str],
    *,
    ca_days: int = DEFAULT_CA_DAYS,
    server_days: int = DEFAULT_SERVER_DAYS,
    reuse_ca: bool = False,
    overwrite: bool = False,
    ca_passphrase: bytes | None = None,
) -> TlsFiles:
    """Write ``ca.pem``, ``ca.key``, ``server.pem`` and ``server.key`` into ``directory``.

    ``reuse_ca`` keeps the CA already in ``directory`` and issues a new server certificate
    (renewal, or new host names) without touching what the forces trust. Existing files are
    never replaced unless ``overwrite`` (or ``reuse_ca`` for the two server files).
    """
    files = TlsFiles(Path(directory))
    parse_hosts(hosts)  # fail before writing anything
    if reuse_ca:
        refuse_existing([files.server_cert, files.server_key], overwrite)
        ca_key, ca_cert = load_ca(files, ca_passphrase)
    else:
        refuse_existing(files.all(), overwrite)
        ca_key, ca_cert = create_ca(days=ca_days)
    server_key, server_cert = issue_server_certificate(ca_key, ca_cert, hosts, days=server_days)
    if not reuse_ca:
        write_file(files.ca_key, _key_pem(ca_key, ca_passphrase), SECRET_MODE)
        write_file(files.ca_cert, _cert_pem(ca_cert), PUBLIC_MODE)
    write_file(files.server_key, _key_pem(server_key, None), SECRET_MODE)
    write_file(files.server_cert, _cert_pem(server_cert), PUBLIC_MODE)
    return files


def describe_certificate(path: Path) -> CertificateSummary:
    """Subject, issuer, names, validity and fingerprint of a PEM certificate."""
    data = read_file(path, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise DeployFileError(f"{path} is not a PEM certificate") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertificateSummary(
        path=Path(path),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        is_ca=is_ca,
        dns_names=dns,
        ip_addresses=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )
