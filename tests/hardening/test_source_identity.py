"""/info/sourceIdentity carries contextSourceUptime and contextSourceTimeAt (clause 5.2.40; the issue spells the
first `contextSourceUpTime`, the spec's table `contextSourceUptime`): an ISO 8601 duration and a DateTime."""

from __future__ import annotations

import re
from datetime import datetime

import httpx

DURATION = re.compile(r"P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?")


def test_uptime_and_time_at(client: httpx.Client) -> None:
    r = client.get("/info/sourceIdentity")
    assert r.status_code == 200, r.text
    body = r.json()
    uptime = body["contextSourceUptime"]
    assert DURATION.fullmatch(uptime) and uptime not in ("P", "PT"), uptime
    at = datetime.fromisoformat(body["contextSourceTimeAt"])
    assert at.tzinfo is not None
