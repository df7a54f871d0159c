"""``reconciler certs``: a CA and the certificates mutual TLS on the xDS port needs, for a local setup.

One CA (``ca.crt``/``ca.key``, made once and reused), the server's certificate (``server.crt``/
``server.key``, DNS and IP SANs for the names proxies dial) and one client certificate per
proxy (``NODE_ID.crt``/``NODE_ID.key``) whose URI SAN ties it to its node id:
``spiffe://TRUST_DOMAIN/ns/NAMESPACE/node/NODE_ID`` (:mod:`reconciler.xds.identity`). Keys are
ECDSA P-256, written 0600 through a temporary file and a rename, so a daemon reloading the
directory never reads half a key. Production setups issue the same shapes from their own CA
(cert-manager, Vault, SPIRE).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.cli.exitcode import ExitCode
from reconciler.errors import UsageError
from reconciler.model.text import quote
from reconciler.xds.identity import spiffe_node_uri

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_SERVER_NAMES",
    "DEFAULT_TRUST_DOMAIN",
    "Issued",
    "issue_certificates",
    "register",
    "run",
]

_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)

#: Istio's default trust domain, so identities read the same as a mesh's.
DEFAULT_TRUST_DOMAIN = "cluster.local"
#: Names the server certificate covers unless told: a daemon and proxies on one machine.
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")
#: A local setup's lifetime; production certificates come from a CA that rotates them.
DEFAULT_DAYS = 365
_CA_FILES = ("ca.crt", "ca.key")
_SERVER = "server"
_FILE_NAME = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$")

_DESCRIPTION = """\
Make a CA and certificates for mutual TLS between Envoy proxies and reconciler's xDS port,
for a local setup or a test cluster. Files written to --out (keys 0600):

  ca.crt  ca.key          the CA (made on the first run, reused after: add proxies later)
  server.crt server.key   the daemon's certificate (DNS/IP SANs from --server-name)
  NODE_ID.crt NODE_ID.key one per --client, with the URI SAN
                          spiffe://TRUST_DOMAIN/ns/NAMESPACE/node/NODE_ID

With mutual TLS on, a proxy may only use the node id its certificate names (that URI SAN, or
a DNS SAN equal to the node id), so one proxy cannot take over another's config or status.
Run the command again to rotate: the daemon picks up a changed server certificate for new
connections without a restart.
"""

_EPILOG = """\
example (daemon and gateway on one machine):
  reconciler certs --out certs --client ingress-1 --namespace istio-system
  reconciler run --repo ... --xds-tls-cert certs/server.crt --xds-tls-key certs/server.key \\
      --xds-client-ca certs/ca.crt
  reconciler bootstrap --node-id ingress-1 --namespace istio-system --xds-address 127.0.0.1:18000 \\
      --xds-ca certs/ca.crt --xds-client-cert certs/ingress-1.crt --xds-client-key certs/ingress-1.key \\
      > envoy.yaml

exit status: 0 written, 2 bad arguments (a node id that is not a file name, an unwritable --out).
"""


@dataclass(frozen=True, slots=True)
class Issued:
    """One certificate written: what it is for, and its files."""

    role: str
    cert: Path
    key: Path
    identity: str


def register(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Add the ``certs`` command to the CLI's subcommands."""
    parser = commands.add_parser(
        "certs",
        help="make a CA and xDS mutual-TLS certificates for a local setup",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write to (made if absent)")
    parser.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP proxies dial the daemon by; repeat for more "
        f"(default on the first run: {', '.join(DEFAULT_SERVER_NAMES)}; given: the server certificate is reissued)",
    )
    parser.add_argument(
        "--client", action="append", default=[], metavar="NODE_ID", help="a proxy's node id; repeat for more"
    )
    parser.add_argument(
        "--namespace",
        default="default",
        metavar="NS",
        help="namespace the clients' bootstraps name (default %(default)s)",
    )
    parser.add_argument(
        "--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="SPIFFE trust domain of client URIs (default %(default)s)"
    )
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="validity of new certificates (default %(default)s)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the certificates ``args`` ask for and print their paths."""
    issued = issue_certificates(
        args.out,
        server_names=args.server_name,
        clients=args.client,
        namespace=args.namespace,
        trust_domain=args.trust_domain,
        days=args.days,
    )
    width = max(len(item.role) for item in issued)
    for item in issued:
        sys.stdout.write(f"{item.role:<{width}}  {item.cert}  {item.key}  {item.identity}\n")
    return ExitCode.OK


def issue_certificates(
    out: Path,
    *,
    server_names: Sequence[str] = (),
    clients: Sequence[str] = (),
    namespace: str = "default",
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    days: int = DEFAULT_DAYS,
) -> list[Issued]:
    """Make (or reuse) the CA in ``out``, then the server certificate and one per client; what was written.

    The server certificate is issued when ``server_names`` are given or none exists yet.
    UsageError for a node id that cannot be a file name, an empty name, or days out of 1..3650.
    """
    if not 1 <= days <= 3650:
        raise UsageError(f"--days {days} is out of range 1..3650")
    for node_id in clients:
        if not _FILE_NAME.match(node_id) or node_id in {_SERVER, "ca"}:
            raise UsageError(
                f"node id {quote(node_id)} cannot name a file here (letters, digits, . _ ~ -; not 'ca' or 'server')"
            )
    if not namespace or not trust_domain or "/" in trust_domain:
        raise UsageError("--namespace and --trust-domain must be non-empty (and the trust domain a host name)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from exc
    validity = datetime.timedelta(days=days)
    ca_cert, ca_key, issued = _ca(out, validity=validity)
    if server_names or not (out / f"{_SERVER}.crt").exists():
        names = tuple(server_names) or DEFAULT_SERVER_NAMES
        sans = [_server_san(name) for name in names]
        issued.append(
            _issue(
                out, _SERVER, sans=sans, server=True, ca=(ca_cert, ca_key), validity=validity, identity=",".join(names)
            )
        )
    for node_id in clients:
        uri = spiffe_node_uri(node_id, namespace=namespace, trust_domain=trust_domain)
        sans = [x509.UniformResourceIdentifier(uri)]
        issued.append(
            _issue(out, node_id, sans=sans, server=False, ca=(ca_cert, ca_key), validity=validity, identity=uri)
        )
    return issued


def _ca(
    out: Path, *, validity: datetime.timedelta
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, list[Issued]]:
    cert_path, key_path = (out / name for name in _CA_FILES)
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot reuse the CA in {out}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise UsageError(f"{key_path} is not an ECDSA key; move the old CA away to make a new one")
        return cert, key, []
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler local xDS CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        _builder(name, key.public_key(), now=now, validity=validity)
        .issuer_name(name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(cert_path, key_path, cert=cert, key=key)
    return cert, key, [Issued(role="ca", cert=cert_path, key=key_path, identity="")]


def _issue(
    out: Path,
    stem: str,
    *,
    sans: list[x509.GeneralName],
    server: bool,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    validity: datetime.timedelta,
    identity: str,
) -> Issued:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]), key.public_key(), now=now, validity=validity
        )
        .issuer_name(ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = out / f"{stem}.crt", out / f"{stem}.key"
    _write(cert_path, key_path, cert=cert, key=key)
    return Issued(role="server" if server else "client", cert=cert_path, key=key_path, identity=identity)


def _builder(
    subject: x509.Name, public_key: ec.EllipticCurvePublicKey, *, now: datetime.datetime, validity: datetime.timedelta
) -> x509.CertificateBuilder:
    # Backdated a little: a proxy whose clock lags the daemon's must not see a "not yet valid" certificate.
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + validity)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _server_san(name: str) -> x509.GeneralName:
    if not name or (any(ch in name for ch in "/ :\t\n") and not _is_ip(name)):
        raise UsageError(f"--server-name {quote(name)} is not a DNS name or IP address")
    return x509.IPAddress(ipaddress.ip_address(name)) if _is_ip(name) else x509.DNSName(name)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _write(cert_path: Path, key_path: Path, *, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """Key first, then certificate, each replaced atomically: a reader sees old or new files, never half of one."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(descriptor, mode)  # mkstemp makes it 0600 already; certificates are public
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
