"""Outbound HTTP to URLs that tenants choose (webhooks), without server-side request forgery.

Owns: the address policy (``address_allowed``), the pinned POST (``post``) and the short error categories a
tenant may see (``OutboundError.category``).

- **Resolved at request time, connected to the checked address.** ``post`` resolves the host once
  (``getaddrinfo``), checks every address it got, and opens the TCP connection to one of those checked addresses
  itself: no second lookup happens, so a DNS answer that changes between the check and the connect (DNS rebinding)
  cannot redirect the request. The ``Host`` header, TLS SNI and certificate verification use the URL's host name.
- **Only global unicast addresses**, unless the operator allow-lists a network (``EVIDENCE_WEBHOOK_ALLOW_NETWORKS``,
  empty by default): loopback, private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, fe80::/10), CGNAT
  (100.64/10), unique-local (fc00::/7), multicast, unspecified, reserved and documentation ranges are refused, and so
  are IPv6 forms that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4
  ``2002::/16``) whose IPv4 address is refused. Numeric spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
  ``127.1``) are read by the resolver as the address they denote, then checked like any other.
- **A total deadline per attempt**: connect, TLS handshake, sending and reading the status line together take at
  most ``timeout`` seconds (a watchdog shuts the socket down), so an endpoint trickling one byte at a time cannot
  hold a delivery thread longer.
- **Short categories only** (``connection refused``, ``timeout``, ``HTTP 500``...) are meant for tenants; the
  exception text (which would make the service a port scanner and banner oracle) goes to the operator's log.

Redirects are not followed. Must not import: Flask, SQLAlchemy, Celery.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "IPAddress",
    "IPNetwork",
    "OutboundError",
    "Response",
    "address_allowed",
    "check_literal_host",
    "post",
    "system_connect",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
Connector = Callable[[tuple[str, int], float], socket.socket]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


class OutboundError(Exception):
    """A failed request. ``category`` is short and safe to show a tenant; ``str(exc)`` is for the operator."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(detail)
        self.category = category


@dataclass(frozen=True)
class Response:
    status: int
    address: str  # the address actually connected to


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)


def _globally_routable(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def address_allowed(address: IPAddress, allow: Sequence[IPNetwork] = ()) -> bool:
    """True if ``address`` is global unicast (and so is any IPv4 address it embeds), or inside an allowed network."""
    if any(address.version == net.version and address in net for net in allow):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_allowed(embedded, allow)
    return _globally_routable(address)


def check_literal_host(host: str, allow: Sequence[IPNetwork] = ()) -> None:
    """For registration: if ``host`` is a numeric address in any spelling the resolver accepts (``127.1``,
    ``2130706433``, ``[::1]``...), refuse it unless allowed. Names are checked when a request is made.

    :raise OutboundError: category ``address not allowed``.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return  # a name, not a number
    for info in infos:
        if not address_allowed(_ip(str(info[4][0])), allow):
            raise OutboundError("address not allowed", f"{host!r} is the non-public address {info[4][0]}")


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for info in infos:
        text = str(info[4][0])
        if text not in seen:
            seen.append(text)
    return seen


def system_connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


class _Watchdog:
    """Shuts a socket down at a deadline, which makes any blocked read or write in another thread return."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:
            self._shutdown(sock)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.fired = True
            raise TimeoutError("deadline passed")
        return left

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            # The plain socket's shutdown (also for an SSLSocket): the fd is shared, no TLS close_notify.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to ``address`` (already checked) instead of resolving ``host`` again; Host header stays ``host``."""

    def __init__(
        self, host: str, port: int, address: str, watchdog: _Watchdog, connector: Connector, ssl_context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=watchdog.remaining())
        self._address = address
        self._watchdog = watchdog
        self._connector = connector
        self._ssl_context = ssl_context
        self.connected = False

    def _open(self) -> socket.socket:
        sock = self._connector((self._address, self.port), self._watchdog.remaining())
        self.connected = True
        self._watchdog.watch(sock)
        sock.settimeout(self._watchdog.remaining())
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        raw = self._open()
        tls = self._ssl_context.wrap_socket(raw, server_hostname=self.host)  # SNI + certificate for the name
        self._watchdog.watch(tls)
        self.sock = tls


def _category(exc: BaseException, watchdog: _Watchdog) -> str:
    if watchdog.fired or isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate not valid"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return "connection closed"
    if isinstance(exc, http.client.HTTPException):
        return "invalid HTTP response"
    return "connection failed"


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow: Sequence[IPNetwork] = (),
    resolver: Resolver = system_resolve,
    connector: Connector = system_connect,
    ssl_context: ssl.SSLContext | None = None,
) -> Response:
    """POST ``body`` to ``url`` within ``timeout`` seconds in total; returns the status (any status, no redirects).

    ``resolver`` and ``connector`` default to the system's; ``ssl_context`` to ``ssl.create_default_context()``.

    :raise OutboundError: the host resolves to a refused address (nothing is sent), or the request failed.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise OutboundError("invalid URL", f"not an absolute http(s) URL: {url[:100]!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = list(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise OutboundError("DNS lookup failed", f"resolving {host!r}: {exc}") from None
    if not addresses:
        raise OutboundError("DNS lookup failed", f"resolving {host!r}: no address")
    for text in addresses:
        if not address_allowed(_ip(text), allow):
            # One refused address refuses the name: a name mixing public and private answers is not trusted.
            raise OutboundError("address not allowed", f"{host!r} resolves to the non-public address {text}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    context = ssl_context or ssl.create_default_context()
    watchdog = _Watchdog(time.monotonic() + timeout)
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    last: BaseException | None = None
    try:
        for address in addresses:
            conn: _PinnedHTTPConnection | None = None
            try:
                conn = cls(host, port, address, watchdog, connector, context)
                conn.request("POST", path, body=body, headers=headers)
                return Response(conn.getresponse().status, address)
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                # Only a failed connect tries the next checked address; once connected, the attempt is over.
                if watchdog.fired or conn is None or conn.connected:
                    break
            finally:
                if conn is not None:
                    conn.close()
    finally:
        watchdog.cancel()
    assert last is not None
    raise OutboundError(_category(last, watchdog), f"POST {host}:{port} via {addresses}: {last!r}") from None
