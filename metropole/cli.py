"""The `metropole` console script.

    metropole run                       the platform on embedded defaults (127.0.0.1, ./data):
                                        NGSI-LD broker 1026, agents 4041/7896, MQTT client of :1883
    metropole broker --port P --data D  one embedded NGSI-LD broker
    metropole agent --broker-url U      the IoT agents alone, delivering to any NGSI-LD broker
    metropole agent mqtt-auth ...       Mosquitto password and ACL files, one user per service group
    metropole check payload|broker ...  compliance reports (Smart Data Models, NGSI-LD)
    metropole demo                      `run` with the simulated fleet (dashboard on :8080)
    metropole indicators compute ...    indicators of a past period, on demand

Every server runs in one asyncio loop under uvicorn, so `run` can host the
broker, and later the agents and the history API, in one process that
Ctrl-C stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal

import uvicorn

from agents.runtime import AgentRuntime, RuntimeOptions
from agents.settings import AgentSettings
from broker.app import create_app
from broker.settings import BrokerSettings
from metropole import gc_tuning
from metropole.public import Task, add_indicators_parser, add_run_flags, public_parts
from metropole.settings import command_env
from web.auth import Authenticator
from web.ports import StartupError, bind
from web.secrets import install_log_filter, redact_url, scrub
from web.serving import EmbeddedServer
from web.tls import ServerTls

log = logging.getLogger("metropole")


def _uvicorn_config(app: Any, host: str, port: int, *, lifespan: Literal["on", "off"]) -> uvicorn.Config:
    """A server of the process: no uvicorn access log (web.access_log has ours), HTTPS per METROPOLE_TLS_*."""
    return uvicorn.Config(app, host=host, port=port, log_level=os.environ.get("METROPOLE_LOG_LEVEL", "warning").lower(),
                          access_log=False, lifespan=lifespan, **ServerTls.from_env().uvicorn_options())


def _broker_server(settings: BrokerSettings, app: Any = None) -> uvicorn.Server:
    return EmbeddedServer(_uvicorn_config(app if app is not None else create_app(settings), settings.host,
                                          settings.port, lifespan="on"))


# --- quantumleap: the QuantumLeap-compatible /v2 history API on a port of its own (8668), same process and history
def _history_server(host: str, port: int, broker_app: Any) -> uvicorn.Server:
    """The /v2 API borrowing the broker app's state (started by the broker's lifespan) and its authenticator."""
    from broker.app import fastapi_telemetry
    from broker.quantumleap import create_quantumleap_app
    from broker.state import state_source

    # FastAPI's per-request OpenTelemetry check off as on the broker's own app and its /v2 mount (issue 16)
    app = create_quantumleap_app(state_source(broker_app), authenticator=broker_app.state.authenticator,
                                 fastapi_options=fastapi_telemetry())
    return EmbeddedServer(_uvicorn_config(app, host, port, lifespan="off"))
# --- end quantumleap


# --- serving: the event loop every server of the process runs on (issue 16, serve22)
def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop of a process per METROPOLE_EVENT_LOOP: `auto` (the default), `uvloop` or `asyncio`; None is asyncio's.

    `uvicorn.run` picks uvloop by itself (`loop="auto"`), but our servers run inside our own loop (several
    servers and the agents in one process), where uvicorn's choice never applied: every request went through
    asyncio's pure-Python selector loop. `auto` is uvloop (installed by `uvicorn[standard]`) for every command,
    `broker` (issue 16, serve22) and, since the agents' MQTT transport takes any loop's transports, `run`,
    `demo` and `agent` too (issue 16, uvloop22); `asyncio` is the way back to asyncio's loop.
    """
    choice = os.environ.get("METROPOLE_EVENT_LOOP", "auto").strip().lower() or "auto"
    if choice not in {"auto", "uvloop", "asyncio"}:
        raise ValueError(f"METROPOLE_EVENT_LOOP={choice!r}: write auto, uvloop or asyncio")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError("METROPOLE_EVENT_LOOP='uvloop': uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def serve_in_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to its end on the loop `event_loop_factory` chooses (otherwise as `asyncio.run`)."""
    try:
        factory = event_loop_factory()
    except ValueError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)
# --- end serving


# --- ops: sockets bound before anything starts (a busy port is one line and exit status 1), shutdown logged
Listeners = dict[int, socket.socket]


def _listen(host: str, ports: Sequence[tuple[int, str, str]]) -> Listeners:
    """Bind every (port, role, flag) now; close them all and raise StartupError on the first that fails."""
    bound: Listeners = {}
    try:
        for port, role, flag in ports:
            bound[port] = bind(host, port, role, flag)
    except StartupError:
        for sock in bound.values():
            sock.close()
        raise
    return bound


async def _serve(servers: Sequence[uvicorn.Server], agents: AgentRuntime | None = None,
                 listeners: Listeners | None = None, tasks: Sequence[Task] = ()) -> None:
    gc_tuning.tune_for_serving()  # a long-running process from here on (issue 16)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reason: list[str] = []

    def stopping(sig: signal.Signals) -> None:
        reason.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    started = time.monotonic()
    if agents is not None:
        await agents.start()
        servers = [*servers, *agents.servers()]
    background = [asyncio.create_task(task(stop)) for task in tasks]  # indicators, demo: they end when stop is set
    try:
        await _run_servers(servers, stop, listeners or {})
    finally:
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        if agents is not None:
            await agents.stop()
        log.info("metropole stopped (%s) after %.0fs", reason[0] if reason else "a server ended",
                 time.monotonic() - started)


async def _run_servers(servers: Sequence[uvicorn.Server], stop: asyncio.Event, listeners: Listeners) -> None:
    tasks = []
    for server in servers:
        sock = listeners.get(server.config.port)
        tasks.append(asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None)))
    done_or_stop = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([*tasks, done_or_stop], return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for t in finished:
        failure = t.exception()
        if t is not done_or_stop and failure is not None:
            raise failure
    for server in servers:
        if not server.started and not stop.is_set():
            raise StartupError(f"the server on port {server.config.port} did not start (see the log above)")


def _agents_key(authenticator: Authenticator) -> str | None:
    """With authentication on, a key for `run`'s own agents to write every tenant, held in memory only."""
    if not authenticator.enabled or os.environ.get("METROPOLE_AGENT_BROKER_API_KEY") \
            or os.environ.get("METROPOLE_AGENT_BROKER_TOKEN"):
        return None
    from web.auth.apikeys import ApiKeys, new_key
    from web.auth.grants import Grant, Principal

    key = new_key()
    if authenticator.api_keys is None:
        authenticator.api_keys = ApiKeys({})
    authenticator.api_keys.add(key, Principal("metropole-agents", "apikey", frozenset({Grant("*", "write")})))
    return key


def _features(authenticator: Authenticator) -> str:
    auth = "+".join(authenticator.methods) if authenticator.enabled else "off"
    return f"authentication {auth}, TLS {'on' if ServerTls.from_env().enabled else 'off'}"
# --- end ops


#: rows per batch request of the agents `metropole run` starts beside its own broker: with 500 (the agents'
#: default, safe for any broker's request size limit) the agents keep about one request in flight and the
#: embedded broker idles half the time at 5,000 measures/s; 2,000 kept up there on SQLite (README, Benchmarks).
#: The embedded broker takes 8 MiB bodies and 10,000 entities per batch. METROPOLE_AGENT_BATCH_SIZE overrides it.
EMBEDDED_AGENT_BATCH_SIZE = 2000


def cmd_demo(args: argparse.Namespace) -> int:
    """`metropole demo`: `run` with the simulated fleet."""
    args.demo = True
    return cmd_run(args)


def cmd_run(args: argparse.Namespace) -> int:
    """The whole platform on embedded defaults, in the foreground."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    broker = BrokerSettings.from_env(host=args.host, port=args.broker_port, data_dir=data)
    tls = ServerTls.from_env()
    authenticator = Authenticator.from_env()
    agents = _agent_runtime(args, data, broker_url=f"{tls.scheme}://{broker.host}:{broker.port}",
                            batch_size=None if os.environ.get("METROPOLE_AGENT_BATCH_SIZE") else EMBEDDED_AGENT_BATCH_SIZE,
                            broker_api_key=_agents_key(authenticator))
    a = agents.settings
    redact_url(a.resolved_registry_url)  # remembers the registry's password: scrubbed from every log line
    ports = [(broker.port, "NGSI-LD broker", "--broker-port"),
             (a.provisioning_port, "IoT agent provisioning API", "--agent-provisioning-port"),
             (a.http_port, "IoT agent HTTP transport", "--agent-http-port")]
    if args.history_port:
        ports.append((args.history_port, "QuantumLeap-compatible history API", "--history-port (0 turns it off)"))
    if args.dashboard_port:
        ports.append((args.dashboard_port, "public dashboard", "--dashboard-port (0 turns it off)"))
    event_loop_factory()  # a wrong METROPOLE_EVENT_LOOP is refused before any port is bound
    listeners = _listen(broker.host, ports)
    agents.authenticator = authenticator
    print(f"metropole: NGSI-LD broker on {tls.scheme}://{broker.host}:{broker.port}/ngsi-ld/v1/ (data in {data})")
    print(f"metropole: IoT agent provisioning on {tls.scheme}://{a.host}:{a.provisioning_port}/iot/, "
          f"HTTP measures on {tls.scheme}://{a.host}:{a.http_port}/iot/json, MQTT {a.mqtt_host}:{a.mqtt_port} ({agents.options.mqtt})")
    broker_app = create_app(broker, authenticator=authenticator)
    servers = [_broker_server(broker, broker_app)]
    if args.history_port:  # quantumleap
        servers.append(_history_server(broker.host, args.history_port, broker_app))
        print(f"metropole: QuantumLeap-compatible history API on {tls.scheme}://{broker.host}:{args.history_port}/v2/ (QuantumLeap 1.0)")
    public, tasks = public_parts(args, broker.host, f"{tls.scheme}://{broker.host}:{broker.port}", agents)  # dashboard, demo
    servers.extend(public)
    print(f"metropole: {_features(authenticator)}; Ctrl-C stops the platform")
    serve_in_loop(_serve(servers, agents, listeners, tasks))
    return 0


def _agent_runtime(args: argparse.Namespace, data: Path, broker_url: str | None,
                   broker_api_key: str | None = None, batch_size: int | None = None) -> AgentRuntime:
    settings = AgentSettings.from_env(
        broker_api_key=broker_api_key,
        host=args.host, data_dir=data, broker_url=broker_url,
        provisioning_port=args.agent_provisioning_port, http_port=args.agent_http_port,
        mqtt_host=args.agent_mqtt_host, mqtt_port=args.agent_mqtt_port,
    )
    options = RuntimeOptions.from_env(mqtt=args.agent_mqtt, batch_mode=args.agent_batch_mode, batch_size=batch_size)
    return AgentRuntime(settings, options)


def cmd_agent(args: argparse.Namespace) -> int:
    """The IoT agents alone, delivering to the NGSI-LD broker at --broker-url."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    agents = _agent_runtime(args, data, broker_url=args.broker_url)
    a = agents.settings
    event_loop_factory()  # a wrong METROPOLE_EVENT_LOOP is refused before any port is bound
    listeners = _listen(a.host, [(a.provisioning_port, "IoT agent provisioning API", "--provisioning-port"),
                                 (a.http_port, "IoT agent HTTP transport", "--http-port")])
    agents.authenticator = authenticator = Authenticator.from_env()
    redact_url(a.resolved_registry_url)  # remembers the registry's password: scrubbed from every log line
    print(f"metropole: IoT agents: provisioning :{a.provisioning_port}, HTTP :{a.http_port}, "
          f"MQTT {a.mqtt_host}:{a.mqtt_port}, delivering to {redact_url(a.broker_url)} (outbox {a.resolved_outbox_path})")
    print(f"metropole: {_features(authenticator)}")
    serve_in_loop(_serve([], agents, listeners))
    return 0


def cmd_agent_mqtt_auth(args: argparse.Namespace) -> int:
    """Write Mosquitto's password file and ACL file from the registry's service groups (agents/mqtt_auth.py)."""
    from agents.mqtt_auth import acl_file, agent_line, password_file, users_of, write_atomically
    from agents.registry import open_registry

    settings = AgentSettings.from_env(data_dir=Path(args.data).resolve(), registry_url=args.registry)

    async def groups() -> list[dict[str, Any]]:
        registry = open_registry(settings.resolved_registry_url)
        await registry.open()
        try:
            return await registry.all_groups()
        finally:
            await registry.close()

    users, notes = users_of(asyncio.run(groups()))
    username = os.environ.get("METROPOLE_AGENT_MQTT_USERNAME") or None
    password_path, acl_path = Path(args.password_file), Path(args.acl_file)
    agent = agent_line(username, os.environ.get("METROPOLE_AGENT_MQTT_PASSWORD"), password_path) if username else None
    if username is None:
        notes.append("METROPOLE_AGENT_MQTT_USERNAME is not set: the agent has no user in these files")
    elif agent is None:
        notes.append(f"the agent's user {username!r} has no password line: set METROPOLE_AGENT_MQTT_PASSWORD")
    write_atomically(password_path, password_file(users, agent))
    write_atomically(acl_path, acl_file(users, username))
    for note in notes:
        print(f"metropole: {note}", file=sys.stderr)
    print(f"metropole: {len(users)} service-group users{' and the agent' if agent else ''} written to "
          f"{password_path} and {acl_path}; send Mosquitto SIGHUP to reload them", file=sys.stderr)
    return 0


def _agent_flags(parser: argparse.ArgumentParser, prefix: str) -> None:
    """--agent-* flags (`run`) or the same without the prefix (`agent`); None = settings/env default."""
    def flag(name: str) -> str:
        return f"--{prefix}{name}"
    parser.add_argument(flag("provisioning-port"), dest="agent_provisioning_port", type=int, default=None,
                        help="provisioning API and /metrics (default 4041)")
    parser.add_argument(flag("http-port"), dest="agent_http_port", type=int, default=None,
                        help="southbound HTTP, /iot/json and /iot/d (default 7896)")
    parser.add_argument(flag("mqtt-host"), dest="agent_mqtt_host", default=None, help="MQTT broker (default 127.0.0.1)")
    parser.add_argument(flag("mqtt-port"), dest="agent_mqtt_port", type=int, default=None, help="default 1883")
    parser.add_argument(flag("mqtt"), dest="agent_mqtt", choices=["auto", "external", "off"], default=None,
                        help="auto: start an embedded MQTT broker when none answers (default)")
    parser.add_argument(flag("batch-mode"), dest="agent_batch_mode", choices=["update", "merge", "replace"],
                        default=None, help="how measures are written: batch upsert (update), merge, replace")


def cmd_broker(args: argparse.Namespace) -> int:
    """One embedded NGSI-LD broker instance."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = BrokerSettings.from_env(host=args.host, port=args.port, data_dir=data, store_url=args.store,
                                       public_url=args.public_url)
    event_loop_factory()  # a wrong METROPOLE_EVENT_LOOP is refused before any port is bound
    listeners = _listen(settings.host, [(settings.port, "NGSI-LD broker", "--port")])
    authenticator = Authenticator.from_env()
    scheme = ServerTls.from_env().scheme
    print(f"metropole: NGSI-LD broker on {scheme}://{settings.host}:{settings.port}/ngsi-ld/v1/ "
          f"(store {redact_url(settings.resolved_store_url)})")
    print(f"metropole: {_features(authenticator)}")
    serve_in_loop(_serve([_broker_server(settings, create_app(settings, authenticator=authenticator))], None, listeners))
    return 0


def cmd_auth_apikey(args: argparse.Namespace) -> int:
    """Print a new API key and the line that grants it, for METROPOLE_AUTH_API_KEYS."""
    from web.auth.apikeys import key_line, new_key
    from web.auth.grants import parse_grant

    bad = [g for g in args.grants if parse_grant(g) is None]
    if bad:
        raise ValueError(f"not a grant: {', '.join(bad)} (write TENANT:read, TENANT:write or TENANT:admin)")
    key = new_key()
    print(f"metropole: the key of {args.name}, shown once and stored nowhere:\n{key}", file=sys.stderr)
    print(key_line(args.name, key, args.grants))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script; its defaults come from METROPOLE_* (metropole/settings.py)."""
    env = command_env()
    parser = argparse.ArgumentParser(prog="metropole", description="Smart Metropole NGSI-LD platform")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole platform on embedded defaults")
    run.add_argument("--host", default=env.host)
    run.add_argument("--data", default=env.data)
    run.add_argument("--broker-port", type=int, default=env.broker_port)
    run.add_argument("--history-port", type=int, default=env.history_port,
                     help="QuantumLeap-compatible /v2 history API (default 8668; 0 disables)")
    _agent_flags(run, "agent-")
    add_run_flags(run, env)
    run.set_defaults(func=cmd_run)

    agent = sub.add_parser("agent", help="run the IoT agents alone")
    agent.add_argument("--host", default=env.agent_host)
    agent.add_argument("--data", default=env.data)
    agent.add_argument("--broker-url", default=None, help="NGSI-LD broker (default http://127.0.0.1:1026)")
    _agent_flags(agent, "")
    agent.set_defaults(func=cmd_agent)
    agent_sub = agent.add_subparsers(dest="agent_command", required=False)
    mqtt_auth = agent_sub.add_parser("mqtt-auth", help="Mosquitto password and ACL files from the service groups")
    mqtt_auth.add_argument("--password-file", required=True, help="Mosquitto's password_file, replaced whole")
    mqtt_auth.add_argument("--acl-file", required=True, help="Mosquitto's acl_file, replaced whole")
    mqtt_auth.add_argument("--data", default=argparse.SUPPRESS, help="as `metropole agent --data`")
    mqtt_auth.add_argument("--registry", default=None,
                           help="registry URL (default METROPOLE_AGENT_REGISTRY, else DATA/agents.db)")
    mqtt_auth.set_defaults(func=cmd_agent_mqtt_auth)

    brk = sub.add_parser("broker", help="run one embedded NGSI-LD broker")
    brk.add_argument("--host", default=env.broker_host)
    brk.add_argument("--port", type=int, default=env.broker_port)
    brk.add_argument("--data", default=env.data)
    brk.add_argument("--store", default=env.broker_store,
                     help="sqlite:///path.db (default: DATA/broker.db) or postgresql://...")
    brk.add_argument("--public-url", default=None,
                     help="base URL context sources reach this broker at, for the relay of subscription copies "
                          "(default METROPOLE_BROKER_PUBLIC_URL, else http://HOST:PORT)")
    brk.set_defaults(func=cmd_broker)

    # --- dashboard, indicators and demo (metropole/public.py) ---
    demo = sub.add_parser("demo", parents=[run], add_help=False, help="the platform with the simulated fleet (run --demo)")
    # not set_defaults(demo=True): `demo` shares run's --demo action (parents=[run]), and argparse's
    # set_defaults also rewrites that action's default, which made a plain `metropole run` start the demo
    demo.set_defaults(func=cmd_demo)
    add_indicators_parser(sub, env)
    # --- end of dashboard ---
    # --- ops: `metropole auth apikey NAME GRANT...` makes an API key and its line of the key file ---
    auth = sub.add_parser("auth", help="credentials for the APIs (web/auth)")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    apikey = auth_sub.add_parser("apikey", help="a new API key: prints the key once, and the line for the key file")
    apikey.add_argument("name", help="who holds it (shown in the access log)")
    apikey.add_argument("grants", nargs="+", help="TENANT:read|write|admin, * for every tenant, @default for the default one")
    apikey.set_defaults(func=cmd_auth_apikey)
    # --- end ops

    # --- check: compliance of payloads and brokers (compliance/) ---
    from compliance.command import add_check_parser

    add_check_parser(sub)
    # --- end of check ---
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `metropole` console script."""
    logging.basicConfig(
        level=os.environ.get("METROPOLE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_filter()  # ops: remembered secrets never reach a log line
    try:
        parser = build_parser()
    except ValueError as exc:  # a bad METROPOLE_* behind a flag's default: one line, as every wrong setting
        print(f"metropole: {scrub(str(exc))}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 0
    except (StartupError, ValueError) as exc:  # a busy port, a wrong setting: one line, exit status 1
        print(f"metropole: {scrub(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"metropole: {scrub(str(exc))}", file=sys.stderr)
        return 1
