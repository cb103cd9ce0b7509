"""One error hierarchy for the whole platform, mapped one to one to NGSI-LD ProblemDetails.

    NgsiLdError                       (type URI, HTTP status, title)
    ├── InvalidRequest                .../InvalidRequest            400
    ├── BadRequestData                .../BadRequestData            400
    │   ├── InvalidQuery              .../BadRequestData            400  (q, scopeQ, geoQ, attrs, pick/omit syntax)
    │   ├── InvalidUri                .../BadRequestData            400
    │   ├── InvalidGeometry           .../BadRequestData            400
    │   └── InvalidAttribute          .../BadRequestData            400
    ├── AlreadyExists                 .../AlreadyExists             409
    ├── Conflict                      .../Conflict                  409
    ├── ResourceNotFound              .../ResourceNotFound          404
    ├── NonexistentTenant             .../NonexistentTenant         404
    ├── OperationNotSupported         .../OperationNotSupported     501
    ├── TooComplexQuery               .../TooComplexQuery           403
    ├── TooManyResults                .../TooManyResults            403
    ├── LdContextNotAvailable         .../LdContextNotAvailable     503
    ├── NoMultiTenantSupport          .../NoMultiTenantSupport      501
    └── InternalError                 .../InternalError             500

The error types are those of ETSI GS CIM 009 V1.9.1 clause 5.5.2 (table
5.5.2-1); the body is RFC 7807 as clause 5.5.3 requires. Every layer raises
these; the API edge turns them into responses with `to_problem()` and never
invents its own error shapes.
"""

from __future__ import annotations

from typing import Any, ClassVar

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(Exception):
    """Base of every error the platform reports; carries its ProblemDetails."""

    problem_type: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    http_status: int | None = None
    """The status a remote broker answered, on an error read from its answer (adapters.ngsild); None otherwise."""

    def __init__(self, detail: str, *, instance: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.instance = instance
        self.extra = extra

    @property
    def type_uri(self) -> str:
        """The spec's error type URI (clause 5.5.2)."""
        return ERROR_BASE + self.problem_type

    def to_problem(self) -> dict[str, Any]:
        """The RFC 7807 ProblemDetails body of this error (clause 5.5.3)."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.instance is not None:
            body["instance"] = self.instance
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


class InvalidRequest(NgsiLdError):
    """The request is syntactically invalid (malformed JSON, bad parameters)."""

    problem_type = "InvalidRequest"
    status = 400
    title = "Invalid request"


class BadRequestData(NgsiLdError):
    """The input data does not meet the requirements of the operation."""

    problem_type = "BadRequestData"
    status = 400
    title = "Bad request data"


class InvalidQuery(BadRequestData):
    """A query expression (q, scopeQ, geoQ, idPattern, attrs, pick/omit) does not parse.

    BadRequestData, as clauses 5.7.2.4, 5.7.4.4, 5.6.21.4 and 5.10.2.4 ask for
    a query, geoquery or temporal query that is not syntactically valid.
    """

    title = "Invalid query"


class InvalidUri(BadRequestData):
    """An identifier that must be a URI (entity id, datasetId, object) is not one."""

    title = "Invalid URI"


class InvalidGeometry(BadRequestData):
    """A GeoProperty value or geo-query geometry is not valid GeoJSON."""

    title = "Invalid geometry"


class InvalidAttribute(BadRequestData):
    """An attribute breaks the NGSI-LD information model (e.g. Relationship without object)."""

    title = "Invalid attribute"


class AlreadyExists(NgsiLdError):
    """The referred element already exists (e.g. creating an existing entity)."""

    problem_type = "AlreadyExists"
    status = 409
    title = "Already exists"


class Conflict(NgsiLdError):
    """The operation conflicts with the current state of the system."""

    problem_type = "Conflict"
    status = 409
    title = "Conflict"


class ResourceNotFound(NgsiLdError):
    """The referred resource (entity, attribute, subscription, ...) does not exist."""

    problem_type = "ResourceNotFound"
    status = 404
    title = "Resource not found"


class NonexistentTenant(NgsiLdError):
    """The addressed tenant does not exist (reads of a tenant never written)."""

    problem_type = "NonexistentTenant"
    status = 404
    title = "Nonexistent tenant"


class OperationNotSupported(NgsiLdError):
    """The operation, or an option of it, is not supported by this implementation."""

    problem_type = "OperationNotSupported"
    status = 501
    title = "Operation not supported"


class TooComplexQuery(NgsiLdError):
    """The query is too complex to be resolved."""

    problem_type = "TooComplexQuery"
    status = 403
    title = "Too complex query"


class TooManyResults(NgsiLdError):
    """The query produces more results than the limits allow (e.g. limit too large)."""

    problem_type = "TooManyResults"
    status = 403
    title = "Too many results"


class LdContextNotAvailable(NgsiLdError):
    """A remote JSON-LD @context cannot be retrieved, so terms cannot be expanded."""

    problem_type = "LdContextNotAvailable"
    status = 503
    title = "JSON-LD @context not available"


class NoMultiTenantSupport(NgsiLdError):
    """Multi-tenancy is not supported by the addressed implementation."""

    problem_type = "NoMultiTenantSupport"
    status = 501
    title = "No multi-tenant support"


class InternalError(NgsiLdError):
    """An unexpected failure while executing the operation."""


ERRORS_BY_TYPE: dict[str, type[NgsiLdError]] = {
    cls.problem_type: cls
    for cls in (
        InvalidRequest,
        BadRequestData,
        AlreadyExists,
        Conflict,
        ResourceNotFound,
        NonexistentTenant,
        OperationNotSupported,
        TooComplexQuery,
        TooManyResults,
        LdContextNotAvailable,
        NoMultiTenantSupport,
        InternalError,
    )
}


def from_problem(body: dict[str, Any]) -> NgsiLdError:
    """Rebuild the most specific error from a ProblemDetails body (used by the adapters)."""
    type_uri = str(body.get("type", ""))
    name = type_uri.rsplit("/", 1)[-1]
    cls = ERRORS_BY_TYPE.get(name, InternalError)
    extra = {k: v for k, v in body.items() if k not in {"type", "title", "status", "detail", "instance"}}
    return cls(str(body.get("detail", body.get("title", name))), instance=body.get("instance"), **extra)
