"""Where a delivery may go: the URL's host resolved once, every address checked, and the
connection made to the checked address (so a second DNS answer cannot rebind it elsewhere)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class RefusedTarget(Exception):
    """The URL may not be sent to (a private address without the operator's leave, a bad scheme)."""


@dataclass(frozen=True)
class Target:
    """A URL and the checked address to connect to."""

    url: str
    """The URL with its host replaced by the checked address."""
    host: str
    """The name the URL gave: the `Host` header, and the TLS server name for https."""
    hostname: str
    """The host name alone (the TLS server name)."""
    address: str


def is_public(address: str) -> bool:
    """Whether `address` is a globally routable unicast address.

    Example:
        >>> is_public("10.0.0.1"), is_public("::1"), is_public("8.8.8.8")
        (False, False, True)
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The address to send `url` to; `RefusedTarget` if any address of its host is not public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {parts.hostname}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    # Every answer must pass: a name that resolves to one public and one private address is refused.
    refused = [a for a in addresses if not is_public(a)]
    if refused and not allow_private:
        raise RefusedTarget(
            f"{parts.hostname} resolves to a non-public address ({refused[0]}); "
            "set FTSERVE_WEBHOOK_ALLOW_PRIVATE=1 to allow it"
        )
    address = addresses[0]
    shown = f"[{address}]" if ":" in address else address
    netloc = f"{shown}:{port}"
    pinned = parts._replace(netloc=netloc).geturl()
    return Target(url=pinned, host=parts.netloc.rpartition("@")[2], hostname=parts.hostname, address=address)
