"""Container health check of the metropole image (stdlib only, no curl in the image).

Exits 0 when METROPOLE_HEALTHCHECK_URL answers 2xx within
METROPOLE_HEALTHCHECK_TIMEOUT seconds, 1 otherwise, printing why. Each compose
service sets the URL of its own role: the broker's `/ready`, the agents'
`/ready` on the provisioning port (readiness: the store, the registry, the
MQTT connection; `/health` is liveness only). Behind TLS, the URL is
`https://<service>:<port>/ready` (a name the certificate holds) and
METROPOLE_HEALTHCHECK_CA the CA that signed it.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:1026/ready"


def check(url: str, timeout: float, ca: str | None = None) -> str | None:
    """None when `url` answers 2xx, else the reason it is unhealthy (an https URL verified against `ca`)."""
    context = ssl.create_default_context(cafile=ca) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} does not answer: {exc}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def main() -> int:
    url = os.environ.get("METROPOLE_HEALTHCHECK_URL", DEFAULT_URL)
    timeout = float(os.environ.get("METROPOLE_HEALTHCHECK_TIMEOUT", "4"))
    reason = check(url, timeout, os.environ.get("METROPOLE_HEALTHCHECK_CA") or None)
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
