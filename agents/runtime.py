"""The IoT agents as one runtime: settings -> registry, ingestor, transports, outbox, delivery, APIs.

    provisioning API + /metrics  :4041   (agents.provisioning)
    HTTP southbound              :7896   (agents.transports.http)
    MQTT southbound              client of 127.0.0.1:1883, or an embedded broker when none answers
    intake -> outbox (SQLite WAL) -> delivery -> NGSI-LD broker (adapters.ngsild)

`serve(settings)` runs it all until cancelled; `AgentRuntime` lets a host
process (`metropole run`) start and stop it beside other servers. Transport
and delivery options that `AgentSettings` does not carry come from
METROPOLE_AGENT_* variables (`RuntimeOptions.from_env`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import uvicorn
from pydantic import BeforeValidator

from adapters.ngsild import NgsiLdClient
from adapters.outbox import Leased, Outbox
from agents import ops as agent_ops
from agents.commands.northbound import MODES, CommandRoutes
from agents.commands.service import CommandService
from agents.delivery import Delivery, DeliveryOptions
from agents.embedded_mqtt import EmbeddedMqttBroker, ensure_mqtt_broker
from agents.ingest import Ingestor
from agents.instance import default_client_id, installation_id
from agents.lorawan.provisioning import Broker, parse_servers
from agents.metrics import Metrics
from agents.provisioning import create_provisioning_app
from agents.provisioning.hooks import Hooks
from agents.registry import DeadLetter, open_registry
from agents.settings import AgentSettings
from agents.transports.http import create_http_app
from agents.transports.intake import Intake
from agents.transports.lorawan_mqtt import NetworkServers
from agents.transports.mqtt import MqttOptions, MqttTransport
from models.times import utc_iso
from web.secrets import remember
from web.serving import EmbeddedServer
from web.settings import EnvFloat, EnvInt, EnvSettings, load, var

__all__ = ["AgentRuntime", "RuntimeOptions", "serve"]

log = logging.getLogger("metropole.agents")


def _lower(raw: object) -> object:
    return raw.lower() if isinstance(raw, str) else raw  # not stripped, as before


def _upper(raw: object) -> object:
    return raw.upper() if isinstance(raw, str) else raw


def _unset_if_empty(raw: object) -> object:
    return raw or None


class RuntimeEnv(EnvSettings):
    """The variables of `RuntimeOptions`; the choices are checked on the final options (flags included)."""

    mqtt: Annotated[str, BeforeValidator(_lower)] = var("METROPOLE_AGENT_MQTT")
    mqtt_protocol: EnvInt = var("METROPOLE_AGENT_MQTT_PROTOCOL")
    mqtt_client_id: str = var("METROPOLE_AGENT_MQTT_CLIENT_ID")
    mqtt_share_group: str = var("METROPOLE_AGENT_MQTT_SHARE_GROUP")
    mqtt_session_expiry: EnvInt = var("METROPOLE_AGENT_MQTT_SESSION_EXPIRY")
    mqtt_username: Annotated[str | None, BeforeValidator(_unset_if_empty)] = var("METROPOLE_AGENT_MQTT_USERNAME")
    mqtt_password: Annotated[str | None, BeforeValidator(_unset_if_empty)] = var("METROPOLE_AGENT_MQTT_PASSWORD")
    batch_mode: Annotated[str, BeforeValidator(_lower)] = var("METROPOLE_AGENT_BATCH_MODE")
    batch_size: EnvInt = var("METROPOLE_AGENT_BATCH_SIZE")
    delivery_workers: EnvInt = var("METROPOLE_AGENT_DELIVERY_WORKERS")
    requests_in_flight: EnvInt = var("METROPOLE_AGENT_REQUESTS_IN_FLIGHT")
    batch_repeats: EnvInt = var("METROPOLE_AGENT_BATCH_REPEATS")
    device_status_interval: EnvFloat = var("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL")
    outbox_sync: Annotated[str, BeforeValidator(_upper)] = var("METROPOLE_AGENT_OUTBOX_SYNC")
    broker_timeout: EnvFloat = var("METROPOLE_AGENT_BROKER_TIMEOUT")
    commands: Annotated[str, BeforeValidator(_lower)] = var("METROPOLE_AGENT_COMMANDS")
    provider_url: str = var("METROPOLE_AGENT_PROVIDER_URL")


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Transport and delivery options (METROPOLE_AGENT_<NAME>).

    (LoRaWAN network servers' brokers are connected to as provisioning names them:
    agents.transports.lorawan_mqtt; their client ids derive from MQTT_CLIENT_ID's)
    MQTT            auto (default: use the broker at MQTT_HOST:MQTT_PORT, start an embedded
                    one there when none answers on a local address), external (never embed), off
    MQTT_PROTOCOL   5 (default) or 4 (MQTT 3.1.1; forced for the embedded broker)
    MQTT_CLIENT_ID  the persistent session's client id; unset: `metropole-agent-<id>`, the id drawn once
                    and kept in the data folder (agents.instance), stable across restarts, unique per installation
    MQTT_SHARE_GROUP  shared-subscription group for several replicas ('' = none)
    MQTT_SESSION_EXPIRY  seconds the MQTT broker keeps the session while the agent is away
    MQTT_USERNAME / MQTT_PASSWORD  credentials for a Mosquitto that has a password file
    BATCH_MODE      update (batch upsert, options=update), merge, replace
    BATCH_SIZE / DELIVERY_WORKERS  rows per batch request / concurrent delivery workers
    REQUESTS_IN_FLIGHT  batch requests of one worker's page in flight at once (default 4; an entity's
                    instances never in two of them: agents.delivery, Requests in flight); 1 = one at a time
    BATCH_REPEATS   instances of one entity per batch request at most; 0 (default) = BATCH_SIZE, so a
                    fast device goes out in batches, not one round trip per measure (agents.delivery,
                    One fast device). Safe for a broker that keeps each instance in history (clause
                    5.5.11.2: the embedded broker, as of issue 16); 1 for one that keeps only the last
    DEVICE_STATUS_INTERVAL  seconds: a device's status entity (the profile's Device entity:
                    dateLastValueReported, battery, rssi...) is sent at most once per interval per device,
                    the latest one (agents.transports.intake.StatusCoalescer); default 10; 0 = with every
                    measure. Measures are never coalesced
    OUTBOX_SYNC     FULL (default, survives power loss) or NORMAL (survives process crashes)
    BROKER_TIMEOUT  seconds per NGSI-LD request
    COMMANDS        how command updates reach the agent: subscription (default), registration, off
                    (agents.commands.northbound)
    PROVIDER_URL    where NGSI-LD brokers reach the agent (notifications, forwarded updates);
                    default http://<host>:<provisioning port>
    """

    mqtt: str = "auto"
    mqtt_protocol: int = 5
    mqtt_client_id: str = ""  # "" = derived from the data folder (agents.instance.default_client_id)
    mqtt_share_group: str = ""
    mqtt_session_expiry: int = 7 * 24 * 3600
    mqtt_username: str | None = None  # for a Mosquitto with a password file (compose/README.md, "Securing MQTT")
    mqtt_password: str | None = None
    batch_mode: str = "update"
    batch_size: int = 500
    delivery_workers: int = 2
    requests_in_flight: int = 4
    batch_repeats: int = 0  # 0 = batch_size
    device_status_interval: float = 10.0  # 0 = a Device status update with every measure
    outbox_sync: str = "FULL"
    broker_timeout: float = 10.0
    commands: str = "subscription"
    provider_url: str = ""

    @classmethod
    def from_env(cls, **overrides: Any) -> RuntimeOptions:
        """Defaults, overridden by METROPOLE_AGENT_* variables, overridden by arguments (None ignored)."""
        values: dict[str, Any] = load(RuntimeEnv)
        values.update({k: v for k, v in overrides.items() if v is not None})
        options = cls(**values)
        if options.mqtt not in {"auto", "external", "off"}:
            raise ValueError(f"METROPOLE_AGENT_MQTT must be auto, external or off, not {options.mqtt!r}")
        if options.batch_mode not in {"update", "merge", "replace"}:
            raise ValueError(f"METROPOLE_AGENT_BATCH_MODE must be update, merge or replace, not {options.batch_mode!r}")
        if not options.device_status_interval >= 0:  # also refuses nan
            raise ValueError("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL must be a number of seconds, 0 or more")
        if options.outbox_sync not in {"FULL", "NORMAL"}:
            raise ValueError("METROPOLE_AGENT_OUTBOX_SYNC must be FULL or NORMAL")
        if options.commands not in MODES:
            raise ValueError(f"METROPOLE_AGENT_COMMANDS must be one of {', '.join(MODES)}, not {options.commands!r}")
        return options


def _is_local(host: str) -> bool:
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _uvicorn(app: Any, host: str, port: int) -> uvicorn.Server:
    from web.tls import ServerTls  # ops: HTTPS when METROPOLE_TLS_CERT is set

    config = uvicorn.Config(app, host=host, port=port, access_log=False, lifespan="on",
                            log_level=os.environ.get("METROPOLE_LOG_LEVEL", "warning").lower(),
                            **ServerTls.from_env().uvicorn_options())
    return EmbeddedServer(config)


class AgentRuntime:
    """Everything the agents need, started and stopped together."""

    def __init__(self, settings: AgentSettings, options: RuntimeOptions | None = None) -> None:
        self.settings = settings
        self.options = options or RuntimeOptions.from_env()
        self.metrics = Metrics()
        self.registry: Any = None
        self.outbox: Outbox | None = None
        self.intake: Intake | None = None
        self.delivery: Delivery | None = None
        self.mqtt: MqttTransport | None = None
        self.embedded_mqtt: EmbeddedMqttBroker | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self.commands: CommandService | None = None
        self.network_servers: NetworkServers | None = None
        self.command_routes: CommandRoutes | None = None
        self._default_client: NgsiLdClient | None = None
        self._servers: list[uvicorn.Server] = []
        self.authenticator: Any = None  # ops: web.auth.Authenticator shared with the host process (None: from env)

    async def start(self) -> None:
        """Open the stores, start intake and delivery, connect MQTT; build the HTTP servers."""
        s, o = self.settings, self.options
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.registry = open_registry(s.resolved_registry_url)
        await self.registry.open()
        servers = parse_servers(s.lorawan_servers)
        ingestor = Ingestor(self.registry, self.metrics, s, allowed_cbrokers=s.allowed_cbrokers())
        self.outbox = Outbox(s.resolved_outbox_path, synchronous=o.outbox_sync)  # type: ignore[arg-type]
        self.commands = CommandService(self.registry, self.outbox, s, metrics=self.metrics, publish=self._publish,
                                       lorawan_publish=self._publish_downlink)
        self.command_routes = CommandRoutes(
            self.commands, mode=o.commands, provider_url=o.provider_url or f"http://{s.host}:{s.provisioning_port}",
            default_broker=s.broker_url, contexts=s.contexts, installation=installation_id(s.data_dir))
        hooks = Hooks(group_changed=self._group_changed, device_changed=self._device_changed,
                      check_cbroker=s.check_cbroker, lorawan_servers=servers, allowed_cbrokers=s.allowed_cbrokers())
        provisioning_app = create_provisioning_app(s, self.registry, self.metrics, outbox=self.outbox, hooks=hooks,
                                                   command_service=self.commands)
        credentials = s.broker_headers()  # ops: the broker may ask who is calling
        remember(s.broker_api_key, s.broker_token)
        self._default_client = NgsiLdClient(s.broker_url, timeout=o.broker_timeout, extra_headers=credentials)
        self.delivery = Delivery(
            self.outbox,
            self._default_client,
            options=DeliveryOptions(mode=o.batch_mode, batch_size=o.batch_size,  # type: ignore[arg-type]
                                    workers=o.delivery_workers, repeats=o.batch_repeats or o.batch_size,
                                    in_flight=o.requests_in_flight),
            metrics=self.metrics,
            client_factory=lambda url: NgsiLdClient(url, timeout=o.broker_timeout, extra_headers=credentials),
            on_dead_letter=self._record_dead_letter,
        )
        self._delivery_task = asyncio.create_task(self.delivery.run(), name="agent-delivery")
        self.commands.start()
        self.intake = Intake(ingestor.process, self.outbox, metrics=self.metrics,
                             status_interval=o.device_status_interval)
        await self.intake.start()
        client_id = o.mqtt_client_id or default_client_id(s.data_dir)
        self.network_servers = NetworkServers(
            self.registry, self.intake, servers, client_id=client_id, share_group=o.mqtt_share_group,
            session_expiry=o.mqtt_session_expiry, max_message_bytes=s.max_message_bytes, metrics=self.metrics,
            events=self.commands.lorawan_event, connected=self.commands.lorawan_connected)
        await self.network_servers.start()
        if o.mqtt != "off":
            protocol = o.mqtt_protocol
            tls = s.mqtt_tls_context()  # ops: MQTT over TLS
            remember(o.mqtt_password)  # ops: never in a log line
            if o.mqtt == "auto" and tls is None and _is_local(s.mqtt_host):
                self.embedded_mqtt = await ensure_mqtt_broker(s.mqtt_host, s.mqtt_port)
                if self.embedded_mqtt is not None:
                    log.warning("no MQTT broker answered on %s:%s: started an embedded one (Mosquitto is better)",
                                s.mqtt_host, s.mqtt_port)
                    protocol = 4
            log.info("MQTT client id %s%s", client_id, "" if o.mqtt_client_id else
                     f" (this installation's, kept in {s.data_dir}; METROPOLE_AGENT_MQTT_CLIENT_ID overrides it)")
            self.mqtt = MqttTransport(
                MqttOptions(host=s.mqtt_host, port=s.mqtt_port, client_id=client_id,
                            share_group=o.mqtt_share_group, protocol=protocol,
                            session_expiry=o.mqtt_session_expiry, username=o.mqtt_username,
                            password=o.mqtt_password, max_message_bytes=s.max_message_bytes, tls=tls),
                self.intake,
                metrics=self.metrics,
                command_results=self._command_result,
            )
            self.mqtt.start()
        http_app = create_http_app(self.intake, json_resource=s.default_resource_json,
                                   ul_resource=s.default_resource_ul, max_message_bytes=s.max_message_bytes,
                                   on_refused=ingestor.record, commands=self.commands,
                                   lorawan_events=self.commands)
        agent_ops.wire(provisioning_app, http_app, self, self.authenticator)  # ops: auth, /health, /ready, access log
        self._servers = [
            _uvicorn(provisioning_app, s.host, s.provisioning_port),
            _uvicorn(http_app, s.host, s.http_port),
        ]

    def servers(self) -> list[uvicorn.Server]:
        """The uvicorn servers (provisioning, HTTP southbound) for the host process to run."""
        return list(self._servers)

    async def stop(self) -> None:
        """Disconnect MQTT first (nothing new comes in), commit the intake, stop delivery, close."""
        if self.mqtt is not None:
            await self.mqtt.aclose()
        if self.network_servers is not None:
            await self.network_servers.aclose()
        if self.commands is not None:
            await self.commands.stop()
        if self.command_routes is not None:
            await self.command_routes.aclose()
        if self.intake is not None:
            await self.intake.stop()
        if self.delivery is not None:
            self.delivery.stop()
        if self._delivery_task is not None:
            await asyncio.gather(self._delivery_task, return_exceptions=True)
        if self._default_client is not None:
            await self._default_client.aclose()
        if self.embedded_mqtt is not None:
            await self.embedded_mqtt.stop()
        if self.outbox is not None:
            self.outbox.close()
        if self.registry is not None:
            await self.registry.close()

    async def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish a command to a device over the agents' MQTT connection."""
        if self.mqtt is None:
            raise ConnectionError("MQTT is off (METROPOLE_AGENT_MQTT=off)")
        await self.mqtt.publish(topic, payload, qos)

    async def _publish_downlink(self, broker: Broker, topic: str, payload: bytes, qos: int) -> None:
        """Queue a LoRaWAN downlink on its network server's broker."""
        if self.network_servers is None:
            raise ConnectionError("no LoRaWAN network server connections")
        await self.network_servers.publish(broker, topic, payload, qos)

    async def _device_changed(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Provisioning hook: commands (un)subscribed, network server connections kept in step."""
        if self.command_routes is not None:
            await self.command_routes.device_changed(old, new)
        if self.network_servers is not None:
            await self.network_servers.changed(old, new)

    async def _command_result(self, protocol: str, apikey: str, device_id: str, payload: bytes) -> None:
        """A cmdexe over MQTT: taken (or refused and logged); acknowledged either way."""
        if self.commands is not None:
            await self.commands.result(apikey, device_id, protocol, payload)

    async def _group_changed(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Provisioning hook: a group's new cbroker also takes the measures still waiting for the old one."""
        if self.network_servers is not None:
            await self.network_servers.changed(old, new)
        if old is None or new is None or self.outbox is None:
            return
        before = old.get("cbroker") or old.get("cbHost") or ""
        after = new.get("cbroker") or new.get("cbHost") or ""
        if before != after:
            n = await asyncio.to_thread(self.outbox.retarget, str(new.get("service", "")), str(new.get("apikey", "")),
                                        str(after))
            log.info("group %s of %s: cbroker %r -> %r, %d waiting measures follow it", new.get("apikey"),
                     new.get("service"), before, after, n)

    async def _record_dead_letter(self, row: Leased, problem: dict[str, Any]) -> None:
        """Mirror a broker-refused update into the registry's dead letters, where integrators look."""
        if self.registry is None:
            return
        tenant, apikey, device_id = (row.item.device.split("|", 2) + ["", ""])[:3]
        letter = DeadLetter(
            received_at=_iso(row.item.accepted_at),
            reason="broker_rejected",
            detail=orjson.dumps(problem).decode(),
            transport="ngsi-ld",
            apikey=apikey,
            device_id=device_id,
            service=tenant,
            service_path=row.item.service_path,
            payload=row.entity_json.decode()[: self.settings.dead_letter_payload_max],
        )
        try:
            await self.registry.add_dead_letter(letter)
        except Exception:  # the outbox's dead_letters table keeps it anyway
            log.exception("could not mirror a dead letter into the registry")


def _iso(ts: float) -> str:
    return utc_iso(ts)


async def serve(settings: AgentSettings, options: RuntimeOptions | None = None) -> None:
    """Run the agents until cancelled (or until one of their servers stops)."""
    runtime = AgentRuntime(settings, options)
    await runtime.start()
    tasks = [asyncio.create_task(server.serve()) for server in runtime.servers()]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in runtime.servers():
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.stop()

