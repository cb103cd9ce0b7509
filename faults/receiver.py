"""A notification receiver that loses nothing it acknowledged: each notification's (entity, value)
pairs are appended to a file and fsynced before the 200 leaves.

    python -m faults.receiver PORT FILE
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()


def main() -> int:
    port, path = int(sys.argv[1]), sys.argv[2]
    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the life of the process

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            lines = [json.dumps([body.get("subscriptionId"), e.get("id"), e.get("no2")]) + "\n"
                     for e in body.get("data", []) if isinstance(e, dict)]
            with _lock:
                out.writelines(lines)
                out.flush()
                os.fsync(out.fileno())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
