"""What every /v2 handler needs from the request: the service, the answer shapes, names, parameters."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from broker.quantumleap.errors import bad
from broker.quantumleap.names import Names
from broker.quantumleap.params import Params, query_tenant, service_paths, split_list
from broker.quantumleap.service import QuantumLeapService
from broker.quantumleap.settings import QuantumLeapSettings
from broker.quantumleap.shapes import Shapes


def service(request: Request) -> QuantumLeapService:
    """The service of the /v2 app serving this request."""
    value: QuantumLeapService = request.app.state.ql_service
    return value


def settings(request: Request) -> QuantumLeapSettings:
    """The settings of the /v2 app serving this request."""
    value: QuantumLeapSettings = request.app.state.ql_settings
    return value


def shapes(request: Request) -> Shapes:
    """Answer shapes of the configured QuantumLeap line."""
    return Shapes(settings(request).shapes)


@dataclass(slots=True)
class Query:
    """A query request, read: tenant, service paths, parameters, names, id list."""

    tenant: str
    paths: list[str]
    params: Params
    names: Names
    ids: list[str] | None

    def attrs(self, request: Request) -> list[str] | None:
        """The attrs parameter; aggrMethod needs it (reporter.py:238-244)."""
        attrs = split_list(request.query_params.get("attrs"))
        if self.params.aggr_method and not attrs:
            raise bad(f"Specified aggrMethod = {self.params.aggr_method} but missing attrs parameter.")
        return attrs


async def read_query(request: Request) -> Query:
    """Parse what every query endpoint takes."""
    tenant = query_tenant(request)
    paths = service_paths(request)
    params = Params.parse(request.query_params)
    names = await service(request).names()
    return Query(tenant, paths, params, names, split_list(request.query_params.get("id")))


def value_suffix(name: str) -> tuple[str, bool]:
    """Names may be IRIs holding '/' (sent %2F-encoded): 'x/value' is the /value variant of 'x'."""
    if name.endswith("/value") and len(name) > len("/value"):
        return name.removesuffix("/value"), True
    return name, False
