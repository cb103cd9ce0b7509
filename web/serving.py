"""The uvicorn server of a component run inside a process that handles its own signals.

`metropole run` stops every server together on SIGINT/SIGTERM (`loop.add_signal_handler` in metropole.cli).
uvicorn (0.29 and later) installs its own handlers around `Server.serve()` (`capture_signals`: signal.signal
for each server, the signal re-raised when it stops); the hook the code used to switch that off,
`install_signal_handlers`, no longer exists, so assigning it did nothing.

uvicorn writes a response's status line and headers in one `transport.write` and its body in another,
so a small JSON response cost two `send` system calls and two TCP segments. On loopback each send does
the receiver's TCP work and wakes it: under `bench.api_bench` that was about 30 % of the broker's
main-thread samples for GET by id (issue 16). `CoalescingTransport` holds the header block until the
next write (the body, even an empty one), so both leave in one send; bytes and their order are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol


class CoalescingTransport:
    """A transport proxy that sends a held response head together with the write that follows it.

    A head is held only until that next write, or at the latest until the loop's next turn
    (a streamed body may come later); `close` sends it first. Everything else is the wrapped transport's.
    """

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data`, after a held head; hold `data` itself when it is a response head."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif isinstance(data, bytes) and data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._held = data
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send a held head now."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def writelines(self, data: Any) -> None:
        """Send each piece in turn (through `write`)."""
        for piece in data:
            self.write(piece)

    def write_eof(self) -> None:
        """Flush, then half-close."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Flush, then close."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHTTP(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools when installed, else h11) over a CoalescingTransport."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(CoalescingTransport(transport))


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server leaving SIGINT and SIGTERM to the process that runs it; responses coalesced (see above)."""

    def __init__(self, config: uvicorn.Config) -> None:
        if config.http == "auto":
            config.http = CoalescingHTTP
        super().__init__(config)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
