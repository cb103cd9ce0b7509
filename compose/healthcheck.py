"""Container health check of the metropole image (stdlib only, no curl in the image).

Exits 0 when METROPOLE_HEALTHCHECK_URL answers 2xx within
METROPOLE_HEALTHCHECK_TIMEOUT seconds, 1 otherwise, printing why. Each compose
service sets the URL of its own role: the broker's `/ready`, the agents'
`/ready` on the provisioning port (readiness: the store, the registry, the
MQTT connection; `/health` is liveness only).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:1026/ready"


def check(url: str, timeout: float) -> str | None:
    """None when `url` answers 2xx, else the reason it is unhealthy."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (URL from our own env)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} does not answer: {exc}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def main() -> int:
    url = os.environ.get("METROPOLE_HEALTHCHECK_URL", DEFAULT_URL)
    timeout = float(os.environ.get("METROPOLE_HEALTHCHECK_TIMEOUT", "4"))
    reason = check(url, timeout)
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
