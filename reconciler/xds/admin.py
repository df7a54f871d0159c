"""A connected proxy's admin API, as an edge: what it really runs, from ``/config_dump``.

The address comes from the proxy's own node metadata (``ADMIN_ADDRESS``, written by
``reconciler bootstrap``), so it is untrusted: the read is bounded in time and size, sends
nothing but a GET, follows no redirect and reads no proxy settings from the environment.
Every failure is an :class:`~reconciler.errors.XdsError` that says what went wrong, never the body.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from reconciler.errors import UsageError, XdsError
from reconciler.model.address import format_address, parse_address

__all__ = ["fetch_config_dump"]


async def fetch_config_dump(address: str, *, timeout: float, max_bytes: int, include_eds: bool = True) -> Any:
    """The proxy's ``/config_dump`` at ``address`` (``HOST:PORT``) as parsed JSON, with endpoints when ``include_eds``.

    Raises XdsError when the address is not ``HOST:PORT``, the proxy does not answer 200 within
    ``timeout`` seconds, the body exceeds ``max_bytes`` or is not JSON.
    """
    try:
        host, port = parse_address(address, what="admin address")
    except UsageError as error:
        raise XdsError(f"the proxy announces an admin address that is not HOST:PORT: {error}") from error
    url = f"http://{format_address(host, port)}/config_dump" + ("?include_eds" if include_eds else "")
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != httpx.codes.OK:
                raise XdsError(f"GET {url} answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise XdsError(f"GET {url}: the config dump is over {max_bytes} bytes")
    except TimeoutError as error:
        raise XdsError(f"GET {url}: no answer within {timeout:g} s") from error
    except httpx.HTTPError as error:
        raise XdsError(f"GET {url}: {type(error).__name__}: {str(error)[:200]}") from error
    try:
        return json.loads(body)
    except ValueError as error:
        raise XdsError(f"GET {url}: not JSON ({str(error)[:100]})") from error
