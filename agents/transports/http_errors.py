"""The answers of the southbound HTTP transport to bad input, as the FIWARE agents give them.

Each rejection reason of the agent core maps to the status code and the
`{"name", "message"}` body that iotagent-json / iotagent-ul (and the
iotagent-node-lib errors they pass on) answer, so device firmware and
integrators' test tools read ours unchanged. Where each comes from (commits
of the FIWARE repositories read: iotagent-json 73d1e0f, iotagent-ul ccafe90,
iotagent-node-lib d3dcc9f):

    reason               status  name                       FIWARE source
    missing k or i       400     MANDATORY_PARAMS_NOT_FOUND iotagent-json lib/errors.js:45-49, HTTPBinding.js:123
    content type         400     UNSUPPORTED_TYPE           iotagent-json lib/errors.js:52-59, HTTPBinding.js:110-119
    malformed_payload    400     BAD_PAYLOAD                iotagent-json lib/errors.js:31-36 (see note)
    wrong_type           400     BAD_PAYLOAD                (every value refused: nothing of the message kept)
    too_long             400     BAD_PAYLOAD
    codec_error          400     BAD_PAYLOAD                a LoRaWAN codec refused the frame (webhooks answer it 202:
                                                            agents.transports.lorawan_http)
    expression_failed    400     INVALID_EXPRESSION         iotagent-node-lib lib/errors.js:239-245
    unknown_apikey       404     DEVICE_GROUP_NOT_FOUND     iotagent-node-lib lib/errors.js:207-224, raised by
                                                            groupRegistry*.js getSilently (no group for the apikey)
    unknown_device       404     DEVICE_NOT_FOUND           iotagent-node-lib lib/errors.js:99-105, deviceService.js:701
                                                            (autoprovision off)
    too_large            413     PAYLOAD_TOO_LARGE          body-parser's limit (iota.expressLimit), HTTPBinding.js:55-57
    too_many_attributes  413     PAYLOAD_TOO_LARGE
    internal_error       500     SERVER_ERROR               HTTPBinding.js:521-537 (handleError: 500 by default)
    outbox unavailable   503     OUTBOX_UNAVAILABLE         ours: the measure was not stored, send it again

Note: iotagent-json defines BAD_PAYLOAD but its HTTP binding lets body-parser's
own error through for malformed JSON (status 400, name "SyntaxError"); we
answer the same status with the name its errors.js defines for that case.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson
from fastapi.responses import Response

from agents.messages import Rejected
from models.media import JSON

__all__ = ["JSON", "HttpError", "error_response", "for_rejection", "mandatory_params", "unsupported_type"]


class HttpError(NamedTuple):
    """A status code and the FIWARE error name it goes with."""

    status: int
    name: str


_BY_REASON: dict[str, HttpError] = {
    "malformed_payload": HttpError(400, "BAD_PAYLOAD"),
    "wrong_type": HttpError(400, "BAD_PAYLOAD"),
    "too_long": HttpError(400, "BAD_PAYLOAD"),
    "mapping_failed": HttpError(400, "BAD_PAYLOAD"),
    "codec_error": HttpError(400, "BAD_PAYLOAD"),
    "expression_failed": HttpError(400, "INVALID_EXPRESSION"),
    "unsupported_content_type": HttpError(400, "UNSUPPORTED_TYPE"),
    "unknown_apikey": HttpError(404, "DEVICE_GROUP_NOT_FOUND"),
    "unknown_device": HttpError(404, "DEVICE_NOT_FOUND"),
    "too_large": HttpError(413, "PAYLOAD_TOO_LARGE"),
    "too_many_attributes": HttpError(413, "PAYLOAD_TOO_LARGE"),
}
_SERVER_ERROR = HttpError(500, "SERVER_ERROR")


def for_rejection(rejection: Rejected) -> HttpError:
    """The status and name of a rejected message."""
    return _BY_REASON.get(rejection.reason, _SERVER_ERROR)


def error_response(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The `{"name", "message"}` body of the FIWARE agents."""
    return Response(orjson.dumps({"name": name, "message": message}), status_code=status, media_type=JSON,
                    headers=headers)


def mandatory_params(missing: list[str]) -> Response:
    """400 for a request without `k` or `i` (iotagent-json names them "API Key", "Device Id")."""
    return error_response(400, "MANDATORY_PARAMS_NOT_FOUND",
                          "Some of the mandatory params weren't found in the request: "
                          + orjson.dumps(missing).decode())


def unsupported_type(accepted: str) -> Response:
    """400 for a body of a media type the binding does not read."""
    return error_response(400, "UNSUPPORTED_TYPE", f"The request content didn't have the expected type [{accepted} ]")
