"""`Authenticate`: the ASGI middleware that asks who is calling and whether its grants cover the request.

    app.add_middleware(Authenticate, authenticator=Authenticator.from_env(), policy=policy.NGSI_LD,
                       render=problem_details)

Off (`authenticator.enabled` false) it passes every request through
untouched. On, it finds the credential (`Authorization: Bearer <JWT or API
key>`, `Authorization: ApiKey <key>`, `X-API-Key`, or `X-Auth-Token` as
FIWARE's PEP proxy Wilma reads it), checks it, matches the request against
the API's policy and answers 401 (no or bad credential, with
`WWW-Authenticate: Bearer`, RFC 6750 3), 403 (valid, but not for this
tenant or scope) or 503 (the issuer's keys cannot be fetched) in the API's
own error shape. The principal is left in `scope["state"]["principal"]`
for the handlers and the access log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from web.auth.grants import Principal
from web.auth.policy import AUTHENTICATED, PUBLIC, Policy, Rule, tenants_of
from web.auth.settings import Authenticator
from web.auth.tokens import InvalidToken, IssuerUnavailable, looks_like_jwt, verify_token

log = logging.getLogger("metropole.auth")

Render = Callable[[int, str, str], tuple[bytes, str]]
"""(status, title, detail) -> (body, content type): each API answers errors in its own shape."""


def plain_json(status: int, title: str, detail: str) -> tuple[bytes, str]:
    """`{"error", "description"}`, the shape of QuantumLeap's errors."""
    return orjson.dumps({"error": title, "description": detail}), "application/json"


class Denied(Exception):
    """A request refused: status, title, detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _credential(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(kind, value): kind 'jwt' or 'apikey'; None when the request carries none."""
    for name, raw in headers:
        key = name.lower()
        if key == b"authorization":
            value = raw.decode("latin-1").strip()
            scheme, _, rest = value.partition(" ")
            rest = rest.strip()
            if scheme.lower() == "bearer" and rest:
                return ("jwt" if looks_like_jwt(rest) else "apikey"), rest
            if scheme.lower() == "apikey" and rest:
                return "apikey", rest
            raise Denied(401, "Unauthorized", f"unsupported Authorization scheme {scheme!r}: use Bearer or ApiKey")
        if key == b"x-api-key":
            return "apikey", raw.decode("latin-1").strip()
        if key == b"x-auth-token":
            value = raw.decode("latin-1").strip()
            return ("jwt" if looks_like_jwt(value) else "apikey"), value
    return None


class Authenticate:
    """Authentication and tenant authorisation of one app (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, policy: Policy,
                 render: Render = plain_json) -> None:
        self.app = app
        self.authenticator = authenticator
        self.policy = policy
        self.render = render

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # `authenticator.enabled` is read on every request (it may be switched while serving); off, the wrapped
        # app's own coroutine is handed back: no frame of this layer for every resume to walk (issue 16)
        if scope["type"] != "http" or not self.authenticator.enabled:
            return self.app(scope, receive, send)
        return self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = await self.check(scope)
        except Denied as denied:
            await self._deny(send, denied)
            return
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def check(self, scope: Scope) -> Principal | None:
        """The principal allowed to make this request (None for public ones); Denied otherwise."""
        path: str = scope["path"]
        if len(path) > 1:
            path = path.rstrip("/") or "/"  # ResourcePaths serves /x/ as /x: the policy must see the same path
        matched = self.policy.match(scope["method"], path)
        if matched.need == PUBLIC:
            return None
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        principal = await self._authenticate(headers)
        self._authorise(principal, matched, headers, scope)
        return principal

    async def _authenticate(self, headers: list[tuple[bytes, bytes]]) -> Principal:
        credential = _credential(headers)
        if credential is None:
            raise Denied(401, "Unauthorized", "this API needs a credential: an API key or an OAuth2 bearer token")
        kind, value = credential
        if kind == "apikey":
            principal = self.authenticator.api_keys.principal(value) if self.authenticator.api_keys else None
            if principal is None:
                raise Denied(401, "Unauthorized", "unknown API key")
            return principal
        try:
            return await verify_token(self.authenticator.issuers, value)
        except InvalidToken as exc:
            raise Denied(401, "Unauthorized", f"invalid bearer token: {exc}") from None
        except IssuerUnavailable as exc:
            log.warning("%s", exc)
            raise Denied(503, "Service Unavailable", "the token issuer cannot be reached; try again later") from None

    @staticmethod
    def _authorise(principal: Principal, matched: Rule, headers: list[tuple[bytes, bytes]], scope: Scope) -> None:
        if matched.need == AUTHENTICATED:
            return
        source = matched.tenants
        if source.any_tenant:
            if not principal.allows_some(matched.need):
                raise Denied(403, "Forbidden", f"{principal.name} has no {matched.need} grant on any tenant")
            return
        if source.every_tenant:
            tenants: list[str] | None = None
        else:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            tenants = tenants_of(source, headers, query)
        if tenants is None:
            if not principal.allows("*", matched.need):
                raise Denied(403, "Forbidden", f"{principal.name} may not {matched.need} every tenant at once")
            return
        for tenant in tenants:
            if not principal.allows(tenant, matched.need, fold_case=source.fold_case):
                shown = repr(tenant) if tenant else "the default tenant"
                raise Denied(403, "Forbidden", f"{principal.name} has no {matched.need} grant on tenant {shown}")

    async def _deny(self, send: Send, denied: Denied) -> None:
        body, media = self.render(denied.status, denied.title, denied.detail)
        headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
        if denied.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="metropole"'))
        await send({"type": "http.response.start", "status": denied.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def problem_json(status: int, title: str, detail: str) -> tuple[bytes, str]:
    """RFC 7807 ProblemDetails (`about:blank`: the title is the HTTP status phrase), for the NGSI-LD API.

    NGSI-LD (clause 5.5.2) defines no error type for authentication, which it
    leaves out of scope (clause 4.14), so the generic problem type is used.
    """
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return orjson.dumps(body), "application/json"
