"""How a command update reaches the agent: a registration (node-lib's way) or a subscription (ours).

iotagent-node-lib in NGSI-LD mode registers each device's commands at the
broker as an exclusive context source (`POST /ngsi-ld/v1/csourceRegistrations`,
`information: [{entities: [{id, type}], propertyNames: <commands>}]`,
`endpoint`: the agent; lib/services/devices/registrationUtils.js:361-425);
the broker then forwards an update of a command attribute to the agent's own
NGSI-LD API (`PATCH /ngsi-ld/v1/entities/:entity/attrs[/:attr]`,
lib/services/northBound/contextServer-NGSI-LD.js:47-48, 817-827, handled by
handleUpdateNgsiLD at :336). That works with brokers that forward to
registered sources: Orion-LD, Scorpio, Stellio.

Brokers without registrations (our embedded broker today) get the command
through a subscription instead: the agent subscribes, per device and command,
to changes of that command attribute (`watchedAttributes` and notified
`attributes` both the one command: a notification then says which command
was updated, where one subscription for all would repeat the others' last
values), and the broker notifies
`<agent>/notify?service=&subservice=` (the tenant travels in the URL, since a
notification carries none); the agent then acts as on a forwarded update.
It works with any NGSI-LD broker with subscriptions.

    METROPOLE_AGENT_COMMANDS   subscription (default) | registration | off
    METROPOLE_AGENT_PROVIDER_URL  where brokers reach the agent (default http://<host>:<provisioning port>)
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from agents.commands.service import CommandService, Device
from models.context import is_core_context_url
from models.media import API

__all__ = ["MODES", "CommandRoutes", "value_of"]

log = logging.getLogger("metropole.agents.commands")

MODES = ("subscription", "registration", "off")


def value_of(attribute: Any) -> Any:
    """The value of an attribute as an update or notification carries it (normalized, concise or keyValues)."""
    if isinstance(attribute, dict) and "value" in attribute:
        return attribute["value"]
    if isinstance(attribute, dict) and attribute.get("type") == "Property":
        return None
    return attribute


class CommandRoutes:
    """The broker-side subscriptions or registrations that bring command updates to the agent.

    What brokers then call (PATCH/PUT of command attributes, POST /notify) is agents.provisioning.commands.
    """

    def __init__(self, service: CommandService, *, mode: str, provider_url: str, default_broker: str,
                 contexts: tuple[str, ...], installation: str, http: httpx.AsyncClient | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"METROPOLE_AGENT_COMMANDS must be one of {', '.join(MODES)}, not {mode!r}")
        self.service = service
        self.mode = mode
        self.provider_url = provider_url.rstrip("/")
        self.default_broker = default_broker.rstrip("/")
        self.contexts = [c for c in contexts if not is_core_context_url(c)]
        self.installation = installation
        self._http = http or httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- what the agent asks of brokers -----------------------------------------------------------

    def _id(self, kind: str, device: Device, command: str = "") -> str:
        key = f"{device.service}|{device.subservice}|{device.device_id}|{command}"
        return f"urn:ngsi-ld:{kind}:metropole-agent-{self.installation}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def _headers(self, device: Device) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if device.service:
            headers["NGSILD-Tenant"] = device.service
        if self.contexts:
            headers["Link"] = (f'<{self.contexts[0]}>; rel="http://www.w3.org/ns/json-ld#context";'
                               ' type="application/ld+json"')
        return headers

    async def device_changed(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Provisioning hook: (un)subscribe or (un)register a device's commands, write its initial attributes."""
        if self.mode == "off":
            return
        try:
            if old is not None:
                before = await self.service.device(old)
                if before is not None:
                    await self._withdraw(before)
            if new is not None:
                after = await self.service.device(new)
                if after is not None:
                    if old is None:
                        await self.service.initial(after, command_attributes=self.mode != "registration")
                    await self._announce(after)
        except httpx.HTTPError as exc:
            log.warning("commands of device %s: the broker could not be told (%s); updates of its commands will"
                        " not reach the agent until it is provisioned again", (new or old or {}).get("device_id"), exc)

    def _documents(self, device: Device) -> tuple[str, list[dict[str, Any]]]:
        """(the collection URL, the registration or the subscriptions) that bring the device's commands to us."""
        broker = (device.broker_url or self.default_broker).rstrip("/")
        names = sorted(device.commands)
        if self.mode == "registration":
            registration: dict[str, Any] = {
                "id": self._id("ContextSourceRegistration", device), "type": "ContextSourceRegistration",
                "information": [{"entities": [{"id": device.entity_id, "type": device.entity_type}],
                                 "propertyNames": names}],
                "mode": "exclusive", "operations": ["updateOps"], "endpoint": self.provider_url,
            }
            if device.service:
                # the tenant the broker names in what it forwards (clause 5.2.9 `tenant`): without it the
                # update reaches the agent with no NGSILD-Tenant, and the device is not found
                registration["tenant"] = device.service
            return f"{broker}{API}/csourceRegistrations", [registration]
        query = urlencode({"service": device.service, "subservice": device.subservice})
        return f"{broker}{API}/subscriptions", [{
            "id": self._id("Subscription", device, name), "type": "Subscription",
            "entities": [{"id": device.entity_id, "type": device.entity_type}],
            "watchedAttributes": [name],
            "notification": {"attributes": [name], "format": "normalized",
                             "endpoint": {"uri": f"{self.provider_url}/notify?{query}", "accept": "application/json"}},
        } for name in names]

    async def _announce(self, device: Device) -> None:
        url, docs = self._documents(device)
        for doc in docs:
            await self._post(url, doc, device)

    async def _post(self, url: str, doc: dict[str, Any], device: Device) -> None:
        response = await self._http.post(url, content=orjson.dumps(doc), headers=self._headers(device))
        if response.status_code == 409:  # ours from an earlier provisioning: replace it
            await self._http.delete(f"{url}/{doc['id']}", headers=self._headers(device))
            response = await self._http.post(url, content=orjson.dumps(doc), headers=self._headers(device))
        if response.status_code >= 300:
            log.warning("commands of device %s: %s answered %s to the %s: %s", device.device_id, url,
                        response.status_code, self.mode, response.text[:300])
        else:
            log.info("commands of device %s: %s %s at %s", device.device_id, self.mode, doc["id"], url)

    async def _withdraw(self, device: Device) -> None:
        url, docs = self._documents(device)
        for doc in docs:
            await self._http.delete(f"{url}/{doc['id']}", headers=self._headers(device))
