"""The Kubernetes API as this package uses it: paged lists and watches of raw JSON, behind :class:`KubeApi`;
server-side apply and delete behind :class:`ApplyApi`; create and replace (the Lease, the rollout state).

:class:`KubeClient` is the one Kubernetes client, the one place the ``kubernetes_asyncio`` library
is called: it reads a kubeconfig (or the in-cluster service account), and makes requests through
the library's authenticated aiohttp client. Objects stay JSON (:mod:`reconciler.kube.objects` reads them) so
one code path serves every API version, ``discovery.k8s.io/v1beta1`` included, which the
library no longer models.

Writes are server-side apply (``PATCH`` with ``application/apply-patch+yaml``; JSON is YAML) under a
field manager, and deletes (CRD mode's Istio objects and inventory); ``POST`` and ``PUT`` with the
``resourceVersion`` read (optimistic concurrency: the Lease and the rollout state ConfigMap).
Server-side apply is GA since Kubernetes 1.22 and beta, on by default, in 1.18-1.21 (1.20 is what
the tests run): the requests are the same.

Everything the server sends is bounded: a list is read page by page (``limit``/``continue``),
a page and a watch event each have a byte cap. Every failure leaves as :class:`KubeError`
(``KubeExpiredError`` for 410 Gone, so a watcher knows to list again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client as kube_client
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.config.config_exception import ConfigException

from reconciler.errors import KubeError, KubeExpiredError
from reconciler.model.text import MESSAGE_CHARS, excerpt

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_PAGE_BYTES",
    "PAGE_SIZE",
    "ApplyApi",
    "KubeApi",
    "KubeClient",
    "preferred_version",
]

#: Objects per list page: client-go's informers ask for 500 too.
PAGE_SIZE = 500
#: One page of a list (500 EndpointSlices of 100 endpoints each are ~10 MiB of JSON).
MAX_PAGE_BYTES = 64 << 20
#: One watch event: one object (an EndpointSlice of 1000 endpoints is well under 1 MiB).
MAX_EVENT_BYTES = 8 << 20
#: Metadata only (``PartialObjectMetadata``): a Pod's labels without its spec and status. A list asks
#: for the list form, a watch for the object form (a watch asking for the list form gets no events).
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
#: Server-side apply's media type: its body is YAML, of which JSON is a subset.
_APPLY_PATCH = "application/apply-patch+yaml"
_MERGE_PATCH = "application/merge-patch+json"
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class _Request:
    method: str = "GET"
    body: Mapping[str, Any] | None = None
    content_type: str = _APPLY_PATCH


_GET = _Request()

#: Seconds a watch lasts before the server ends it and it is resumed (client-go picks 5-10 minutes).
WATCH_SECONDS = 300
#: A request that is not a watch: connecting and reading a page.
REQUEST_SECONDS = 30.0


class KubeApi(Protocol):
    """Lists and watches of one collection path (``/api/v1/services``), as JSON."""

    async def get(self, path: str) -> Mapping[str, Any]:
        """One object or discovery document."""
        ...

    async def list(self, path: str, *, metadata_only: bool = False) -> tuple[list[Any], str]:
        """Every item of the collection (only their metadata, if asked), and the resourceVersion to watch from."""
        ...

    def watch(
        self, path: str, *, resource_version: str, metadata_only: bool = False
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Events (``{"type": ..., "object": ...}``) after ``resource_version`` until the server ends the watch.

        Raises KubeExpiredError when ``resource_version`` is too old.
        """
        ...


class ApplyApi(Protocol):
    """Server-side apply and delete of one object path (``/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME``)."""

    async def apply(self, path: str, body: Mapping[str, Any], *, field_manager: str, force: bool) -> Mapping[str, Any]:
        """Apply ``body`` as ``field_manager`` (``force``: take over fields other managers own); the object after it."""
        ...

    async def merge_patch(self, path: str, body: Mapping[str, Any], *, field_manager: str) -> Mapping[str, Any]:
        """A JSON merge patch (RFC 7386) as ``field_manager``: sets fields whoever owns them (``null`` removes)."""
        ...

    async def delete(self, path: str) -> bool:
        """Delete the object; False when it was already gone (404)."""
        ...


def preferred_version(group: Mapping[str, Any], *, wanted: Sequence[str]) -> str | None:
    """The first of ``wanted`` versions that an API group's discovery document (``/apis/GROUP``) lists."""
    versions = group.get("versions")
    served = {v.get("version") for v in versions if isinstance(v, Mapping)} if isinstance(versions, list) else set()
    return next((version for version in wanted if version in served), None)


class KubeClient:
    """:class:`KubeApi` and :class:`ApplyApi` over ``kubernetes_asyncio``'s client, creates and replaces too;
    make one with :meth:`connect`, then :meth:`close`."""

    def __init__(self, api: kube_client.ApiClient) -> None:
        self._api = api

    @classmethod
    async def connect(cls, kubeconfig: Path | None) -> KubeClient:
        """A client for the cluster ``kubeconfig`` names (its current context), or, without one, in-cluster.

        Raises KubeError when the configuration cannot be read.
        """
        configuration = kube_client.Configuration()
        try:
            if kubeconfig is not None:
                await kube_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
            else:
                kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as error:
            where = f"kubeconfig {kubeconfig}" if kubeconfig is not None else "the in-cluster service account"
            raise KubeError(f"cannot read {where}: {excerpt(str(error), MESSAGE_CHARS)}") from error
        return cls(kube_client.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self._api.close()

    async def get(self, path: str) -> Mapping[str, Any]:
        body = await self._read(path, (), accept=None)
        return body if isinstance(body, Mapping) else {}

    async def list(self, path: str, *, metadata_only: bool = False) -> tuple[list[Any], str]:
        accept = _METADATA_LIST if metadata_only else None
        items: list[Any] = []
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            page = await self._read(path, query, accept=accept)
            metadata = page.get("metadata") if isinstance(page, Mapping) else None
            if not isinstance(page, Mapping) or not isinstance(metadata, Mapping):
                raise KubeError(f"GET {path}: the answer is not a list")
            found = page.get("items")
            items.extend(found if isinstance(found, list) else [])
            token = metadata.get("continue") or ""
            if not token:
                version = metadata.get("resourceVersion")
                return items, version if isinstance(version, str) else ""

    async def watch(
        self, path: str, *, resource_version: str, metadata_only: bool = False
    ) -> AsyncIterator[Mapping[str, Any]]:
        accept = _METADATA_WATCH if metadata_only else None
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        # No read timeout: a quiet watch sends nothing for minutes; the server ends it after WATCH_SECONDS.
        timeout = aiohttp.ClientTimeout(total=None, connect=REQUEST_SECONDS, sock_connect=REQUEST_SECONDS)
        response = await self._request(path, query, accept=accept, timeout=timeout)
        try:
            await _raise_for_status(response, path)
            buffer = b""
            while True:
                chunk = await _guarded(response.content.readany(), path)
                if not chunk:
                    return  # the server ended the watch (its timeout): resume from the last version
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_EVENT_BYTES:
                    raise KubeError(f"watch {path}: an event over {MAX_EVENT_BYTES} bytes")
                for line in lines:
                    if line.strip():
                        yield _event(line, path)
        finally:
            response.release()

    async def apply(self, path: str, body: Mapping[str, Any], *, field_manager: str, force: bool) -> Mapping[str, Any]:
        query = [("fieldManager", field_manager)] + ([("force", "true")] if force else [])
        answer = await self._read(path, query, accept=None, method="PATCH", body=body, content_type=_APPLY_PATCH)
        return answer if isinstance(answer, Mapping) else {}

    async def merge_patch(self, path: str, body: Mapping[str, Any], *, field_manager: str) -> Mapping[str, Any]:
        query = [("fieldManager", field_manager)]
        answer = await self._read(path, query, accept=None, method="PATCH", body=body, content_type=_MERGE_PATCH)
        return answer if isinstance(answer, Mapping) else {}

    async def create(self, collection: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST ``body`` to ``collection``; the object created (KubeError 409 when it exists)."""
        answer = await self._read(collection, (), accept=None, method="POST", body=body, content_type=_JSON)
        return answer if isinstance(answer, Mapping) else {}

    async def replace(self, path: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """PUT ``body`` (with the ``resourceVersion`` it was read at); KubeError 409 when it changed since."""
        answer = await self._read(path, (), accept=None, method="PUT", body=body, content_type=_JSON)
        return answer if isinstance(answer, Mapping) else {}

    async def delete(self, path: str) -> bool:
        try:
            await self._read(path, (), accept=None, method="DELETE")
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def _read(
        self,
        path: str,
        query: Sequence[tuple[str, str]],
        *,
        accept: str | None,
        method: str = "GET",
        body: Mapping[str, Any] | None = None,
        content_type: str = _APPLY_PATCH,
    ) -> Any:
        timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
        request = _Request(method=method, body=body, content_type=content_type)
        response = await self._request(path, query, accept=accept, timeout=timeout, request=request)
        try:
            await _raise_for_status(response, path, method=method)
            # read(n) returns what has arrived (one chunk of a large list), not n bytes: read to the end.
            answer = bytearray()
            while chunk := await _guarded(response.content.read(MAX_PAGE_BYTES + 1 - len(answer)), path):
                answer += chunk
                if len(answer) > MAX_PAGE_BYTES:
                    raise KubeError(f"{method} {path}: the answer is over {MAX_PAGE_BYTES} bytes")
            return _json(bytes(answer), path)
        finally:
            response.release()

    async def _request(
        self,
        path: str,
        query: Sequence[tuple[str, str]],
        *,
        accept: str | None,
        timeout: aiohttp.ClientTimeout,
        request: _Request = _GET,
    ) -> aiohttp.ClientResponse:
        method = request.method
        headers = {"Accept": accept or "application/json"}
        if request.body is not None:
            headers["Content-Type"] = request.content_type
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list(query),
                header_params=headers,
                body=dict(request.body) if request.body is not None else None,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise KubeError(f"{method} {path}: {excerpt(str(error) or type(error).__name__, MESSAGE_CHARS)}") from error
        return response


async def _guarded(read: Any, path: str) -> bytes:
    try:
        data: bytes = await read
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
        raise KubeError(f"GET {path}: {excerpt(str(error) or type(error).__name__, MESSAGE_CHARS)}") from error
    return data


async def _raise_for_status(response: aiohttp.ClientResponse, path: str, *, method: str = "GET") -> None:
    if 200 <= response.status < 300:
        return
    try:
        detail = (await asyncio.wait_for(response.content.read(4096), REQUEST_SECONDS)).decode("utf-8", "replace")
    except (aiohttp.ClientError, OSError, TimeoutError):
        detail = ""
    kind = KubeExpiredError if response.status == 410 else KubeError
    message = _status_message(detail) or response.reason or ""
    raise kind(f"{method} {path}: {response.status} {excerpt(message, MESSAGE_CHARS)}", status=response.status)


def _status_message(text: str) -> str:
    try:
        status = json.loads(text)
    except ValueError:
        return text
    return str(status.get("message", "")) if isinstance(status, dict) else text


def _json(body: bytes, path: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise KubeError(f"GET {path}: the answer is not JSON") from error


def _event(line: bytes, path: str) -> Mapping[str, Any]:
    event = _json(line, path)
    if not isinstance(event, Mapping) or not isinstance(event.get("object"), Mapping):
        raise KubeError(f"watch {path}: an event without an object")
    if event.get("type") == "ERROR":
        # A Status: 410 when the version the watch started from was compacted away.
        status = event["object"]
        code = status.get("code") if isinstance(status.get("code"), int) else None
        kind = KubeExpiredError if code == 410 else KubeError
        raise kind(f"watch {path}: {code} {excerpt(str(status.get('message', '')), MESSAGE_CHARS)}", status=code)
    return event
