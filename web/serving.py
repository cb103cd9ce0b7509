"""The uvicorn server of a component run inside a process that handles its own signals.

`metropole run` stops every server together on SIGINT/SIGTERM (`loop.add_signal_handler` in metropole.cli).
uvicorn (0.29 and later) installs its own handlers around `Server.serve()` (`capture_signals`: signal.signal
for each server, the signal re-raised when it stops); the hook the code used to switch that off,
`install_signal_handlers`, no longer exists, so assigning it did nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server leaving SIGINT and SIGTERM to the process that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
