"""Binding the listening sockets before anything starts, with a one-line error when a port is taken.

The servers are then handed these sockets (`uvicorn.Server.serve(sockets=...)`),
so there is no window between the check and the bind, and a busy port is
reported as what it is instead of a traceback from inside the event loop.
"""

from __future__ import annotations

import errno
import socket


class StartupError(Exception):
    """A reason the platform cannot start, printed as one line; exit status 1."""


def bind(host: str, port: int, role: str, flag: str) -> socket.socket:
    """A listening socket on (host, port); StartupError naming the role and the flag that moves it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen for the {role} on {host}:{port}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use, so the {role} cannot start "
                               f"(stop what holds it, or choose another port with {flag})") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"no permission to listen on port {port} for the {role} (choose a port above 1023 "
                               f"with {flag})") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"{host} is not an address of this machine; the {role} cannot listen there") from None
        raise StartupError(f"cannot listen for the {role} on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
