"""A QuantumLeap client (requests): works against QuantumLeap 1.0 itself or the platform's port 8668.

    ql = QuantumLeapClient("http://127.0.0.1:8668", service="city", service_path="/")
    ql.notify([{"id": "Room1", "type": "Room", "temperature": {"type": "Number", "value": 21}}])
    ql.entity_attr("Room1", "temperature", last_n=10)     # {"entityId", "entityType", "attrName", "index", "values"}
    ql.series("Room1", "temperature", from_date="2026-01-01T00:00:00Z")   # [(index, value), ...]
    ql.delete_entity("Room1", to_date="2026-01-01T00:00:00Z")
    ql.subscribe(entity_type="AirQualityObserved", attributes="no2")  # the broker subscription feeding history

Every query method returns the parsed JSON; keyword parameters are the
QuantumLeap query parameters in snake case (from_date -> fromDate, last_n,
aggr_method, aggr_period, aggr_scope, id_pattern, georel, geometry, coords,
limit, offset, options; `type_`/`id_` for type/id; lists are comma-joined).
An error answer raises `QuantumLeapError` (`QuantumLeapNotFound` for 404: no
records), with QuantumLeap's `error`/`description`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import requests

_RENAMES = {"type_": "type", "id_": "id", "from_date": "fromDate", "to_date": "toDate", "last_n": "lastN",
            "aggr_method": "aggrMethod", "aggr_period": "aggrPeriod", "aggr_scope": "aggrScope", "id_pattern": "idPattern"}


_SUBSCRIBE = {"orion_url": "orionUrl", "quantumleap_url": "quantumleapUrl", "entity_type": "entityType", "entity_id": "entityId",
              "observed_attributes": "observedAttributes", "notified_attributes": "notifiedAttributes",
              "time_index_attribute": "timeIndexAttribute"}


class QuantumLeapError(Exception):
    """A QuantumLeap error answer."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description


class QuantumLeapNotFound(QuantumLeapError):
    """404: no records for the query."""


def _params(kwargs: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out[_RENAMES.get(key, key.rstrip("_"))] = str(value)
    return out


def _seg(text: str) -> str:
    return quote(text, safe="")


class QuantumLeapClient:
    """The QuantumLeap /v2 API at `base_url` (without /v2), as one Fiware-Service / Fiware-ServicePath."""

    def __init__(self, base_url: str, service: str | None = None, service_path: str | None = None,
                 session: requests.Session | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.service_path = service_path
        self.session = session or requests.Session()
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.service:
            headers["Fiware-Service"] = self.service
        if self.service_path:
            headers["Fiware-ServicePath"] = self.service_path
        return headers

    def _check(self, response: requests.Response) -> requests.Response:
        if response.status_code < 400:
            return response
        try:
            body = response.json()
            error, description = str(body.get("error", "")), str(body.get("description", ""))
        except ValueError:
            error, description = response.reason or "", response.text
        cls = QuantumLeapNotFound if response.status_code == 404 else QuantumLeapError
        raise cls(response.status_code, error, description)

    def _get(self, path: str, kwargs: Mapping[str, Any]) -> Any:
        response = self.session.get(f"{self.base_url}/v2{path}", params=_params(kwargs), headers=self._headers(), timeout=self.timeout)
        return self._check(response).json()

    # ------------------------------------------------------------ writes

    def notify(self, entities: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, subscription_id: str = "ql-client",
               time_index_attribute: str | None = None) -> str:
        """POST /v2/notify: NGSI-v2 entities (a list), or a whole notification body (NGSI-v2 or NGSI-LD, a dict)."""
        body: dict[str, Any] = (dict(entities) if isinstance(entities, Mapping)
                                else {"subscriptionId": subscription_id, "data": list(entities)})
        headers = {**self._headers(), "Content-Type": "application/json"}
        if time_index_attribute:
            headers["Fiware-TimeIndex-Attribute"] = time_index_attribute
        response = self.session.post(f"{self.base_url}/v2/notify", json=body, headers=headers, timeout=self.timeout)
        return self._check(response).text

    # ------------------------------------------------------------ reads

    def version(self) -> Any:
        response = self.session.get(f"{self.base_url}/version", headers=self._headers(), timeout=self.timeout)
        return self._check(response).json()

    def entities(self, **kwargs: Any) -> Any:
        """GET /v2/entities: [{"entityId", "entityType", "index"}] (type_=..., id_pattern=..., from_date=...)."""
        return self._get("/entities", kwargs)

    def entity(self, entity_id: str, **kwargs: Any) -> Any:
        """GET /v2/entities/{entityId}: one entity, its attributes (attrs=...)."""
        return self._get(f"/entities/{_seg(entity_id)}", kwargs)

    def entity_value(self, entity_id: str, **kwargs: Any) -> Any:
        return self._get(f"/entities/{_seg(entity_id)}/value", kwargs)

    def entity_attr(self, entity_id: str, attr: str, **kwargs: Any) -> Any:
        """GET /v2/entities/{entityId}/attrs/{attrName}."""
        return self._get(f"/entities/{_seg(entity_id)}/attrs/{_seg(attr)}", kwargs)

    def entity_attr_value(self, entity_id: str, attr: str, **kwargs: Any) -> Any:
        return self._get(f"/entities/{_seg(entity_id)}/attrs/{_seg(attr)}/value", kwargs)

    def type(self, entity_type: str, **kwargs: Any) -> Any:
        """GET /v2/types/{entityType}."""
        return self._get(f"/types/{_seg(entity_type)}", kwargs)

    def type_value(self, entity_type: str, **kwargs: Any) -> Any:
        return self._get(f"/types/{_seg(entity_type)}/value", kwargs)

    def type_attr(self, entity_type: str, attr: str, **kwargs: Any) -> Any:
        """GET /v2/types/{entityType}/attrs/{attrName}."""
        return self._get(f"/types/{_seg(entity_type)}/attrs/{_seg(attr)}", kwargs)

    def type_attr_value(self, entity_type: str, attr: str, **kwargs: Any) -> Any:
        return self._get(f"/types/{_seg(entity_type)}/attrs/{_seg(attr)}/value", kwargs)

    def attr(self, attr: str, **kwargs: Any) -> Any:
        """GET /v2/attrs/{attrName}: every entity with the attribute, grouped by type."""
        return self._get(f"/attrs/{_seg(attr)}", kwargs)

    def attr_value(self, attr: str, **kwargs: Any) -> Any:
        return self._get(f"/attrs/{_seg(attr)}/value", kwargs)

    def attrs(self, **kwargs: Any) -> Any:
        """GET /v2/attrs: every attribute (or attrs=...), each grouped by type."""
        return self._get("/attrs", kwargs)

    def resources(self) -> Any:
        """GET /v2: the resource list."""
        return self._get("", {})

    def delete_entity(self, entity_id: str, **kwargs: Any) -> None:
        """DELETE /v2/entities/{entityId} (type_=, from_date=, to_date=); QuantumLeapNotFound when nothing was deleted."""
        self._delete(f"/entities/{_seg(entity_id)}", kwargs)

    def delete_type(self, entity_type: str, *, drop_table: bool = False, **kwargs: Any) -> None:
        """DELETE /v2/types/{entityType} (from_date=, to_date=; drop_table needs the root service path)."""
        self._delete(f"/types/{_seg(entity_type)}", {**kwargs, "dropTable": "true" if drop_table else None})

    def subscribe(self, **kwargs: Any) -> requests.Response:
        """POST /v2/subscribe (orion_url=, quantumleap_url=, entity_type=, attributes=, throttling= ...): the broker's answer."""
        params = _params({_SUBSCRIBE.get(k, k): v for k, v in kwargs.items()})
        response = self.session.post(f"{self.base_url}/v2/subscribe", params=params, headers=self._headers(), timeout=self.timeout)
        return self._check(response)

    def _delete(self, path: str, kwargs: Mapping[str, Any]) -> None:
        response = self.session.delete(f"{self.base_url}/v2{path}", params=_params(kwargs), headers=self._headers(),
                                       timeout=self.timeout)
        self._check(response)

    def series(self, entity_id: str, attr: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """(time index, value) pairs of one attribute of one entity; [] when there are no records."""
        try:
            body = self.entity_attr_value(entity_id, attr, **kwargs)
        except QuantumLeapNotFound:
            return []
        return list(zip(body["index"], body["values"]))
