"""What `metropole run` adds for the public: the dashboard (8080), the indicators service, and the demo.

    metropole run                      + dashboard on :8080 and indicators computed every minute
    metropole run --demo               + the simulated fleet of four pilot towns (indicators every 5 s)
    metropole demo                     the same as `run --demo`
    metropole indicators compute --from 2026-11-01 --to 2026-11-30   recompute a past period

Settings: --dashboard-port / METROPOLE_DASHBOARD_PORT (0 disables),
--indicators-tenant / METROPOLE_INDICATORS_TENANT (default "metropole", the
demo's fiware-service), --indicators-interval / METROPOLE_INDICATORS_INTERVAL,
--demo / METROPOLE_DEMO=1, --demo-days / METROPOLE_DEMO_DAYS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

import uvicorn

from metropole.settings import CommandEnv
from web.serving import EmbeddedServer

Task = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A part run beside the servers until the event is set (an async function: asyncio.create_task runs it)."""


def add_run_flags(parser: argparse.ArgumentParser, env: CommandEnv) -> None:
    """The dashboard, indicators and demo flags of `run` (and `demo`), their defaults from `env`."""
    parser.add_argument("--dashboard-port", type=int, default=env.dashboard_port,
                        help="public dashboard (default 8080; 0 disables)")
    parser.add_argument("--indicators-tenant", default=env.indicators_tenant,
                        help="NGSILD-Tenant whose sensors get indicators (default metropole)")
    parser.add_argument("--indicators-interval", type=float, default=None,
                        help="seconds between indicator passes (default 60; 5 with --demo)")
    parser.add_argument("--demo", action="store_true", default=env.demo,
                        help="play the simulated fleet of four pilot towns through the agents")
    parser.add_argument("--demo-days", type=int, default=env.demo_days,
                        help="days of history the demo backfills (default 14)")


def public_parts(args: argparse.Namespace, host: str, broker_url: str, agents: Any) -> tuple[list[uvicorn.Server], list[Task]]:
    """The dashboard server and the background tasks (indicators service, demo player) `run` starts."""
    from dashboard.app import DashboardSettings, create_dashboard_app
    from indicators.service import IndicatorService, IndicatorSettings

    servers: list[uvicorn.Server] = []
    tasks: list[Task] = []
    interval = args.indicators_interval or (5.0 if args.demo else None)
    service = IndicatorService(IndicatorSettings.from_env(broker_url=broker_url, tenant=args.indicators_tenant,
                                                          interval=interval))
    tasks.append(service.run)
    print(f"metropole: indicators of tenant {service.settings.tenant!r} every {service.settings.interval:g} s")
    if args.dashboard_port:  # bound by `run` before anything starts: a busy port stops the start (metropole.cli)
        settings = DashboardSettings.from_env(broker_url=broker_url, tenant=args.indicators_tenant)
        config = uvicorn.Config(create_dashboard_app(settings), host=host, port=args.dashboard_port,
                                log_level=os.environ.get("METROPOLE_LOG_LEVEL", "warning").lower(), access_log=False,
                                lifespan="off")
        servers.append(EmbeddedServer(config))
        print(f"metropole: public dashboard on http://{host}:{args.dashboard_port}/")
    if args.demo:
        from demo.player import DemoSettings, Player

        a = agents.settings
        player = Player(DemoSettings(provisioning_url=f"http://{a.host}:{a.provisioning_port}", broker_url=broker_url,
                                     mqtt_host=a.mqtt_host, mqtt_port=a.mqtt_port, days=args.demo_days))
        tasks.append(player.run)
        print(f"metropole: demo: 12 simulated devices in 4 towns, {args.demo_days} days of history, via MQTT "
              f"{a.mqtt_host}:{a.mqtt_port}")
    return servers, tasks


def add_indicators_parser(sub: Any, env: CommandEnv) -> None:
    """`metropole indicators compute --from D --to D`: compute and write a past period on demand."""
    parser = sub.add_parser("indicators", help="compute indicators on demand")
    inner = parser.add_subparsers(dest="action", required=True)
    compute = inner.add_parser("compute", help="compute and write every indicator of a period")
    compute.add_argument("--from", dest="first", required=True, type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    compute.add_argument("--to", dest="last", required=True, type=date.fromisoformat, help="last day (YYYY-MM-DD)")
    compute.add_argument("--broker-url", default=env.indicators_broker_url)
    compute.add_argument("--tenant", default=env.indicators_tenant)
    compute.set_defaults(func=cmd_indicators_compute)


def cmd_indicators_compute(args: argparse.Namespace) -> int:
    """Compute a past period for every sensor of the tenant and print what was written."""
    from indicators.service import IndicatorService, IndicatorSettings

    if args.last < args.first:
        print("metropole: --to is before --from", file=sys.stderr)
        return 2
    service = IndicatorService(IndicatorSettings.from_env(broker_url=args.broker_url, tenant=args.tenant))
    report = asyncio.run(service.compute_period(args.first, args.last))
    print(f"metropole: {report.sensors} sensors, {report.recomputed} computed, {report.written} indicator instances written")
    return 0
