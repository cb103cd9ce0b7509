"""Answer bodies of the two QuantumLeap lines: the 1.0.0 release (default) and its master branch.

1.0.0 names entities `entityId`/`entityType` in every answer and answers
404 "Not Found" when nothing matches (src/reporter/query_*.py at tag 1.0.0).
Master renamed them `id`/`type` (PR #754) and answers 200 `[]` instead of
the 404 (PR #752); everything else is the same. `Shapes` renders a 1.0.0
body in the configured line.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from broker.quantumleap.errors import not_found
from broker.quantumleap.settings import Shapes as Line

_MASTER_KEYS = {"entityId": "id", "entityType": "type"}


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer (QuantumLeap's are application/json)."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _rename(value: Any) -> Any:
    if isinstance(value, dict):
        return {_MASTER_KEYS.get(k, k): _rename(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v) for v in value]
    return value


class Shapes:
    """Renders 1.0.0-shaped bodies in the configured line."""

    def __init__(self, line: Line) -> None:
        self.line = line

    def ok(self, body: Any) -> Response:
        """A 200 with `body` (written in 1.0.0's keys)."""
        return json_response(_rename(body) if self.line == "master" else body)

    def nothing(self) -> Response:
        """No records: 404 on 1.0.0, 200 [] on master."""
        if self.line == "master":
            return json_response([])
        raise not_found()
