"""PROXY protocol v2: the customer's address when the daemon sits behind a load balancer.

A TCP load balancer (HAProxy ``send-proxy-v2``, AWS NLB, ...) connects to the daemon from its
own address; everything that counts per address (:mod:`sftpd.defender`, :mod:`sftpd.limits`,
logs) would see one client. With ``[server] proxy_protocol`` on, the balancer starts each
connection with a binary header naming the client (haproxy.org's ``proxy-protocol.txt``,
section 2.2), and this module reads it before asyncssh sees a byte:

- :func:`parse` decodes a header from the bytes received so far (no I/O): a
  :class:`ProxyHeader`, None while more bytes are needed, or :class:`ProxyHeaderError` as soon
  as the bytes cannot be a valid header. Only version 2, PROXY or LOCAL, TCP over IPv4 or IPv6;
  TLVs are skipped; a header is at most :data:`MAX_HEADER_BYTES`.
- :class:`ProxyHeaderReader` sits in front of each accepted connection. From a trusted proxy
  (``trusted_proxies``) the header must come first, within :data:`HEADER_TIMEOUT_SECONDS`;
  then asyncssh's connection is made on a transport whose ``peername`` is the client named by
  a PROXY header (the proxy's own for LOCAL, a balancer's health check). A missing or malformed
  header closes the connection, logged with the proxy's address.
- A connection from any other address is served as a direct one, under its own socket address:
  its bytes are never read as a header, so no client can name another address. Its first bytes
  are still watched, and one that begins with the header's signature (a balancer that is not
  trusted, or a client trying to pass for one) is closed and logged instead of reaching SSH.
  Direct connections stay possible (the admin health check, an internal client) because the
  address they are counted under is the one the kernel saw, which is true either way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

from core.errors import UsageError
from core.logs import get_logger

__all__ = [
    "HEADER_TIMEOUT_SECONDS",
    "MAX_HEADER_BYTES",
    "SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "TrustedProxies",
    "build",
    "parse",
    "reader_for",
]

log = get_logger(__name__)

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# Signature, version and command, family and transport, length of what follows.
_FIXED = struct.Struct("!12sBBH")
FIXED_BYTES = _FIXED.size
# The largest header accepted, TLVs included. The addresses take at most 216 bytes; balancers add
# a few TLVs (HAProxy's unique id, AWS's endpoint id), far below this.
MAX_HEADER_BYTES = 4096
# How long a trusted proxy has to send the whole header after connecting.
HEADER_TIMEOUT_SECONDS = 5.0

_VERSION = 0x2
_COMMANDS: dict[int, Literal["LOCAL", "PROXY"]] = {0x0: "LOCAL", 0x1: "PROXY"}
_COMMAND_CODES = {name: code for code, name in _COMMANDS.items()}
# Family and transport byte: TCP over IPv4, TCP over IPv6; and their address blocks.
_TCP4, _TCP6, _UNSPEC = 0x11, 0x21, 0x00
_ADDRESSES = {_TCP4: struct.Struct("!4s4sHH"), _TCP6: struct.Struct("!16s16sHH")}

Address = tuple[str, int]


class ProxyHeaderError(UsageError):
    """The bytes are not a PROXY v2 header this server accepts; the message says why."""


@dataclass(frozen=True)
class ProxyHeader:
    """One decoded header: ``source`` is the client for PROXY, None for LOCAL; ``length`` is
    how many bytes it took (the SSH stream starts after them)."""

    command: Literal["LOCAL", "PROXY"]
    source: Address | None
    destination: Address | None
    length: int


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``, None if ``data`` is a valid beginning of one, or
    :class:`ProxyHeaderError` as soon as it cannot be (so garbage is refused without waiting)."""
    seen = data[: len(SIGNATURE)]
    if seen != SIGNATURE[: len(seen)]:
        raise ProxyHeaderError("no PROXY protocol v2 signature")
    if len(data) > len(SIGNATURE):
        version, code = data[len(SIGNATURE)] >> 4, data[len(SIGNATURE)] & 0x0F
        if version != _VERSION:
            raise ProxyHeaderError(f"PROXY protocol version {version}, expected 2")
        if code not in _COMMANDS:
            raise ProxyHeaderError(f"unknown PROXY protocol command {code:#x}")
    if len(data) < FIXED_BYTES:
        return None
    _, version_command, family, length = _FIXED.unpack_from(data)
    total = FIXED_BYTES + length
    if total > MAX_HEADER_BYTES:
        raise ProxyHeaderError(f"PROXY header of {total} bytes, more than {MAX_HEADER_BYTES}")
    if len(data) < total:
        return None
    command = _COMMANDS[version_command & 0x0F]
    if command == "LOCAL":
        return ProxyHeader("LOCAL", None, None, total)
    addresses = _ADDRESSES.get(family)
    if addresses is None:
        raise ProxyHeaderError(f"PROXY header for family/transport {family:#04x}, "
                               "not TCP over IPv4 or IPv6")
    if length < addresses.size:
        raise ProxyHeaderError(f"PROXY header's addresses cut short ({length} bytes)")
    source, destination, source_port, destination_port = addresses.unpack_from(data, FIXED_BYTES)
    return ProxyHeader("PROXY", (_address(source), source_port),
                       (_address(destination), destination_port), total)


def build(command: Literal["LOCAL", "PROXY"], source: Address | None = None,
          destination: Address | None = None, tlvs: bytes = b"") -> bytes:
    """The header a balancer sends (for tests and tools): PROXY needs both addresses, of one
    family; LOCAL carries none. ``tlvs`` is appended as is."""
    body = b""
    family = _UNSPEC
    if command == "PROXY":
        if source is None or destination is None:
            raise ValueError("a PROXY header names its source and destination")
        ips = [ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])]
        if ips[0].version != ips[1].version:
            raise ValueError("source and destination must be of one IP version")
        family = _TCP4 if ips[0].version == 4 else _TCP6
        body = _ADDRESSES[family].pack(ips[0].packed, ips[1].packed, source[1], destination[1])
    body += tlvs
    return _FIXED.pack(SIGNATURE, _VERSION << 4 | _COMMAND_CODES[command], family,
                       len(body)) + body


def _address(packed: bytes) -> str:
    """An address as the kernel would report it; an IPv4-mapped IPv6 address as IPv4."""
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class TrustedProxies:
    """The addresses and networks allowed to name another client (``trusted_proxies``)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.ip_address(str(address).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)


class ProxyHeaderReader(asyncio.Protocol):
    """Reads the PROXY header of one accepted connection, then makes the SSH connection's
    protocol (``make_session``) and hands it the rest; see the module's docstring."""

    def __init__(self, make_session: Callable[[], asyncio.Protocol], trusted: TrustedProxies,
                 timeout: float = HEADER_TIMEOUT_SECONDS) -> None:
        self._make_session = make_session
        self._trusted = trusted
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._peer = "unknown"
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None
        self._session: asyncio.Protocol | None = None
        # A direct connection's first bytes are watched for the signature until they differ.
        self._watching = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport; uvloop's (the daemon's loop) is one without subclassing asyncio's.
        stream = cast(asyncio.Transport, transport)
        self._transport = stream
        peer = stream.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "unknown"
        if self._peer in self._trusted:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out)
        else:
            self._watching = True
            self._hand_over(stream)

    def data_received(self, data: bytes) -> None:
        if self._session is not None and not self._watching:
            self._session.data_received(data)
            return
        self._buffer += data
        if self._watching:
            self._watch()
        else:
            self._read_header()

    def eof_received(self) -> bool | None:
        if self._session is None:
            self._refuse("the connection ended before a whole PROXY header")
            return None
        if self._watching and self._buffer:
            self._watching = False
            self._session.data_received(self._pop_buffer())
        return self._session.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._session is not None:
            self._session.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._session is not None:
            self._session.pause_writing()

    def resume_writing(self) -> None:
        if self._session is not None:
            self._session.resume_writing()

    def _read_header(self) -> None:
        try:
            header = parse(self._buffer)
        except ProxyHeaderError as error:
            self._refuse(str(error))
            return
        if header is None:
            return
        self._cancel_timer()
        rest = self._buffer[header.length:]
        self._buffer = b""
        assert self._transport is not None
        transport: asyncio.Transport = self._transport
        if header.source is not None:
            transport = _ProxiedTransport(transport, header.source)
        log.debug("proxy.header", proxy=self._peer, command=header.command,
                  client=header.source[0] if header.source else self._peer)
        self._hand_over(transport)
        if rest and self._session is not None:
            self._session.data_received(rest)

    def _watch(self) -> None:
        seen = self._buffer[: len(SIGNATURE)]
        if seen != SIGNATURE[: len(seen)]:
            self._watching = False
            assert self._session is not None
            self._session.data_received(self._pop_buffer())
        elif len(seen) == len(SIGNATURE):
            log.warning("proxy.untrusted_header", source=self._peer,
                        reason="a PROXY header from an address not in trusted_proxies")
            self._close()

    def _hand_over(self, transport: asyncio.Transport) -> None:
        self._session = self._make_session()
        self._session.connection_made(transport)

    def _timed_out(self) -> None:
        self._timer = None
        if self._session is None:
            self._refuse(f"no whole PROXY header within {self._timeout:g} seconds")

    def _refuse(self, reason: str) -> None:
        log.warning("proxy.bad_header", proxy=self._peer, reason=reason)
        self._close()

    def _close(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pop_buffer(self) -> bytes:
        data, self._buffer = self._buffer, b""
        return data


class _ProxiedTransport(asyncio.Transport):
    """The accepted connection's transport, but for ``peername``: the client the proxy named
    (``proxy_peername`` keeps the proxy's own)."""

    def __init__(self, inner: asyncio.Transport, client: Address) -> None:
        super().__init__()
        self._inner = inner
        self._client = client

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._client
        if name == "proxy_peername":
            return self._inner.get_extra_info("peername", default)
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._inner.writelines(list_of_data)

    def write_eof(self) -> None:
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()


def reader_for(trusted_proxies: Iterable[str]) -> Callable[[Callable[[], asyncio.Protocol]],
                                                            asyncio.Protocol]:
    """What the listener puts in front of each connection (see :mod:`sftpd.tcp`)."""
    trusted = TrustedProxies(trusted_proxies)

    def front(make_session: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        return ProxyHeaderReader(make_session, trusted)

    return front

