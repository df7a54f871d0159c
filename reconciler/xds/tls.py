"""TLS and mutual TLS on the xDS port: credentials that reload from disk, and who may open a stream.

:class:`ServerTls` names the server's certificate and key and, for mutual TLS, the CA client
certificates must chain to. The files are read at start (a missing file, a key that does not
match its certificate or an unreadable CA stops the daemon with a clear error) and again when
any of them changes: gRPC asks :meth:`CertificateFiles.fetch` before every TLS handshake, which
compares the files' stat stamps and re-reads them only then. New connections get the new
certificate; open streams keep theirs. A half-written or mismatched set is not used: the old
one keeps serving, and a warning says why (once per change of the files).

With client certificates, :class:`IdentityInterceptor` checks each stream before any servicer
sees it (ADS and the metrics service alike, one server): the certificate's SANs against the
allowlist, then the node id of the stream's first message against the certificate
(:mod:`reconciler.xds.identity`). A refused stream ends with PERMISSION_DENIED and reaches
neither the cache nor status.

Plaintext is refused on any address but loopback unless asked for (``--xds-plaintext``), and
then warned about at start (:func:`check_listen_security`, :func:`reconciler.xds.server.start_server`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from reconciler.errors import UsageError, XdsError
from reconciler.model.address import is_loopback
from reconciler.model.text import quote
from reconciler.translate.proxy import ProxyIdentity
from reconciler.xds.identity import PeerIdentity, allowed_by, node_refusal, peer_identity_from_pem

__all__ = [
    "CertificateFiles",
    "IdentityInterceptor",
    "ServerTls",
    "certificate_not_after",
    "check_files",
    "check_listen_security",
    "server_credentials",
]

_log = structlog.get_logger()

#: Bytes one certificate, key or CA bundle file may have: far above a chain of a few certificates.
MAX_PEM_BYTES = 1024 * 1024
_PEM_CERT_PROPERTY = "x509_pem_cert"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTls:
    """TLS on the xDS port; with ``client_ca_file`` it is mutual TLS and proxies need certificates."""

    #: The server's certificate chain (PEM), leaf first.
    cert_file: Path
    #: The server's private key (PEM, unencrypted).
    key_file: Path
    #: CA certificates (PEM) client certificates must chain to; ``None``: no client certificates asked for.
    client_ca_file: Path | None = None
    #: Patterns (``*`` wildcards) a client certificate's URI or DNS SAN must match; empty: any the CA signed.
    allowed_identities: tuple[str, ...] = ()
    #: With client certificates: a stream's node id must be its certificate's (see :mod:`reconciler.xds.identity`).
    bind_node_ids: bool = True
    #: The SPIFFE trust domain node URIs must name; ``None``: any (the CA is what is trusted).
    trust_domain: str | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None


def check_listen_security(host: str, *, tls: ServerTls | None, plaintext: bool) -> None:
    """UsageError for plaintext xDS beyond loopback unless ``plaintext`` asks for it (the server then warns).

    Plaintext lets anyone who reaches the port read every route and claim any node id.
    """
    if tls is not None and plaintext:
        raise UsageError("--xds-plaintext cannot be combined with --xds-tls-cert/--xds-tls-key")
    if tls is None and not plaintext and not is_loopback(host):
        raise UsageError(
            f"xDS on {quote(host)} would be plaintext to the network: anyone reaching it can read every route and "
            "pose as any proxy. Give --xds-tls-cert and --xds-tls-key (and --xds-client-ca for mutual TLS; "
            "`reconciler certs` makes a local set), or --xds-plaintext to accept plaintext"
        )


def check_files(tls: ServerTls) -> None:
    """UsageError when a file is missing or unreadable, or the key is not the certificate's: before starting."""
    CertificateFiles(tls)


@dataclass(frozen=True, slots=True)
class _Material:
    cert_chain: bytes
    key: bytes
    client_ca: bytes | None


class CertificateFiles:
    """The server's certificate, key and client CA on disk, re-read when any of them changes."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._failed_stamp: tuple[tuple[int, int, int], ...] | None = None
        self.initial = _configuration(self._read())

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher, called before each handshake: a new configuration once the files changed, else None."""
        with self._lock:
            try:
                stamp = self._stat()
            except UsageError:
                return None  # mid-replacement (a file briefly gone): the next handshake looks again
            if stamp in (self._stamp, self._failed_stamp):
                return None
            try:
                material = self._read()
            except UsageError as exc:
                self._failed_stamp = stamp
                _log.warning("xds.tls_reload_failed", error=str(exc), message="the previous certificate keeps serving")
                return None
            self._stamp = stamp
            self._failed_stamp = None
            _log.info("xds.tls_reloaded", cert=str(self._tls.cert_file))
            return _configuration(material)

    def _paths(self) -> tuple[Path, ...]:
        tls = self._tls
        return (tls.cert_file, tls.key_file, *((tls.client_ca_file,) if tls.client_ca_file else ()))

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths():
            try:
                info = path.stat()
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
            stamps.append((info.st_mtime_ns, info.st_size, info.st_ino))
        return tuple(stamps)

    def _read(self) -> _Material:
        tls = self._tls
        cert_chain = _read_pem(tls.cert_file)
        key = _read_pem(tls.key_file)
        try:
            leaf = x509.load_pem_x509_certificates(cert_chain)[0]
        except ValueError as exc:
            raise UsageError(f"{tls.cert_file} holds no PEM certificate: {exc}") from exc
        try:
            private_key = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{tls.key_file} holds no unencrypted PEM private key: {exc}") from exc
        if _public_bytes(leaf.public_key()) != _public_bytes(private_key.public_key()):
            raise UsageError(f"{tls.key_file} is not the key of the certificate in {tls.cert_file}")
        client_ca = None
        if tls.client_ca_file is not None:
            client_ca = _read_pem(tls.client_ca_file)
            try:
                x509.load_pem_x509_certificates(client_ca)
            except ValueError as exc:
                raise UsageError(f"{tls.client_ca_file} holds no PEM CA certificate: {exc}") from exc
        return _Material(cert_chain=cert_chain, key=key, client_ca=client_ca)


def certificate_not_after(path: Path) -> datetime:
    """When the leaf (first) certificate in ``path`` expires (UTC); UsageError naming the file if unreadable."""
    try:
        return x509.load_pem_x509_certificates(_read_pem(path))[0].not_valid_after_utc
    except ValueError as exc:
        raise UsageError(f"{path} holds no PEM certificate: {exc}") from exc


def _public_bytes(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _read_pem(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_PEM_BYTES:
        raise UsageError(f"{path} is larger than {MAX_PEM_BYTES} bytes: not a certificate or key")
    return data


def _configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert_chain)], root_certificates=material.client_ca
    )


def server_credentials(tls: ServerTls) -> tuple[grpc.ServerCredentials, list[_Interceptor]]:
    """Credentials for ``add_secure_port`` (reloading from disk) and the interceptors that check identities.

    UsageError when a file is missing or unreadable, or the key does not match the certificate.
    """
    files = CertificateFiles(tls)
    # gRPC documents None from the fetcher as "no change"; the type stubs leave it out.
    fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], files.fetch)
    credentials = grpc.dynamic_ssl_server_credentials(files.initial, fetch, require_client_authentication=tls.mutual)
    checks_identity = tls.mutual and (tls.bind_node_ids or bool(tls.allowed_identities))
    return credentials, [IdentityInterceptor(tls)] if checks_identity else []


_Handler = Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], Any]
if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _Interceptor = grpc.aio.ServerInterceptor


class IdentityInterceptor(_Interceptor):
    """Refuses a stream whose client certificate is not allowed, or whose node id is not the certificate's."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.request_streaming and handler.response_streaming:
            stream_stream = cast(_Handler, handler.stream_stream)

            async def checked_stream_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
                async for response in stream_stream(await self._admit(requests, context), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(
                checked_stream_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.request_streaming:
            stream_unary = cast(_Handler, handler.stream_unary)

            async def checked_stream_unary(requests: AsyncIterator[Any], context: Any) -> Any:
                return await stream_unary(await self._admit(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(
                checked_stream_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Every RPC proxies make streams; a unary one names no node to check, so it is refused outright.
        return grpc.unary_unary_rpc_method_handler(_refuse_unary)

    async def _admit(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The stream's requests, unchanged, once the peer passed; aborts the RPC otherwise."""
        peer = str(context.peer())
        try:
            identity = _peer_identity(context)
        except XdsError as exc:
            await _refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(exc), peer=peer)
        tls = self._tls
        if tls.allowed_identities and not allowed_by(identity, tls.allowed_identities):
            await _refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"client certificate ({identity.describe()}) is not in the xDS allowlist",
                peer=peer,
            )
        if not tls.bind_node_ids:
            return requests
        first = await anext(aiter(requests), None)
        if first is None:
            return _replay(None, requests)
        node = _node_of(first)
        if node is None or not node.id:
            await _refuse(
                context, grpc.StatusCode.PERMISSION_DENIED, "the first message names no node to check", peer=peer
            )
        proxy = ProxyIdentity.from_metadata(str(node.id), json_format.MessageToDict(node.metadata))
        refusal = node_refusal(
            identity, node_id=proxy.node_id, namespace=proxy.namespace, trust_domain=tls.trust_domain
        )
        if refusal is not None:
            await _refuse(context, grpc.StatusCode.PERMISSION_DENIED, refusal, peer=peer)
        return _replay(first, requests)


async def _replay(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``first`` (unless None), then the rest of the stream: what the servicer would have read."""
    if first is not None:
        yield first
    async for item in rest:
        yield item


def _peer_identity(context: grpc.aio.ServicerContext[Any, Any]) -> PeerIdentity:
    pem = next(iter(context.auth_context().get(_PEM_CERT_PROPERTY, ())), None)
    if not pem:
        raise XdsError("no client certificate")
    return peer_identity_from_pem(pem)


def _node_of(message: Message) -> base_pb2.Node | None:
    """The Envoy ``Node`` a first message carries: ADS requests have ``node``, metrics ``identifier.node``.

    Read back through its bytes: the metrics service declares only the node fields it reads, and
    the metadata (the namespace) survives in the parsed message as unknown fields.
    """
    holder: Any = message
    if "identifier" in message.DESCRIPTOR.fields_by_name and message.HasField("identifier"):
        holder = holder.identifier
    if "node" in holder.DESCRIPTOR.fields_by_name and holder.HasField("node"):
        return base_pb2.Node.FromString(holder.node.SerializeToString())
    return None


async def _refuse(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, reason: str, *, peer: str
) -> NoReturn:
    _log.warning("xds.refused", peer=peer, code=code.name, reason=reason)
    await context.abort(code, reason)
    raise AssertionError("abort returned")  # grpc's abort raises; this keeps the NoReturn honest


async def _refuse_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only streams that name their node are served")
