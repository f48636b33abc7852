"""A scripted stand-in for socket.getaddrinfo: chosen names get chosen answers, and lookups are counted."""

from __future__ import annotations

import socket
import threading
from collections import Counter

REAL_GETADDRINFO = socket.getaddrinfo

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple]


def addrinfo(address: str, port: int) -> AddrInfo:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


class FakeDns:
    """Answers each scripted name with its next answer (the last one repeats); other hosts, IP literals
    included, go to the real resolver and are listed in `passed_through`.

    Install with `monkeypatch.setattr(socket, "getaddrinfo", fake)`.
    """

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: Counter[str] = Counter()
        self.passed_through: list[str] = []
        self._lock = threading.Lock()

    def __call__(
        self,
        host: str | bytes | None,
        port: object,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        name = host.decode() if isinstance(host, bytes) else host
        with self._lock:
            if name not in self.answers:
                self.passed_through.append(str(name))
            else:
                self.lookups[name] += 1
                script = self.answers[name]
                addresses = script[min(self.lookups[name], len(script)) - 1]
                return [addrinfo(address, int(port or 0)) for address in addresses]  # type: ignore[arg-type]
        return REAL_GETADDRINFO(host, port, family, type, proto, flags)  # type: ignore[arg-type]
