"""The `metropole` console script.

    metropole run                       the platform on embedded defaults (127.0.0.1, ./data)
    metropole broker --port P --data D  one embedded NGSI-LD broker

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
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from broker.app import create_app
from broker.settings import BrokerSettings

log = logging.getLogger("metropole")


def _broker_server(settings: BrokerSettings) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=os.environ.get("METROPOLE_LOG_LEVEL", "warning").lower(),
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


async def _serve(servers: Sequence[uvicorn.Server]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = []
    for server in servers:
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        tasks.append(asyncio.create_task(server.serve()))
    done_or_stop = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([*tasks, done_or_stop], return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for t in finished:
        if t is not done_or_stop and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


def cmd_run(args: argparse.Namespace) -> int:
    """The whole platform on embedded defaults, in the foreground."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    broker = BrokerSettings.from_env(host=args.host, port=args.broker_port, data_dir=data)
    print(f"metropole: NGSI-LD broker on http://{broker.host}:{broker.port}/ngsi-ld/v1/ (data in {data})")
    print("metropole: Ctrl-C stops the platform")
    asyncio.run(_serve([_broker_server(broker)]))
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    """One embedded NGSI-LD broker instance."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = BrokerSettings.from_env(host=args.host, port=args.port, data_dir=data, store_url=args.store)
    print(f"metropole: NGSI-LD broker on http://{settings.host}:{settings.port}/ngsi-ld/v1/ (store {settings.resolved_store_url})")
    asyncio.run(_serve([_broker_server(settings)]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script."""
    parser = argparse.ArgumentParser(prog="metropole", description="Smart Metropole NGSI-LD platform")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole platform on embedded defaults")
    run.add_argument("--host", default=os.environ.get("METROPOLE_HOST", "127.0.0.1"))
    run.add_argument("--data", default=os.environ.get("METROPOLE_DATA", "./data"))
    run.add_argument("--broker-port", type=int, default=int(os.environ.get("METROPOLE_BROKER_PORT", "1026")))
    run.set_defaults(func=cmd_run)

    brk = sub.add_parser("broker", help="run one embedded NGSI-LD broker")
    brk.add_argument("--host", default=os.environ.get("METROPOLE_BROKER_HOST", "127.0.0.1"))
    brk.add_argument("--port", type=int, default=int(os.environ.get("METROPOLE_BROKER_PORT", "1026")))
    brk.add_argument("--data", default=os.environ.get("METROPOLE_DATA", "./data"))
    brk.add_argument("--store", default=os.environ.get("METROPOLE_BROKER_STORE"),
                     help="sqlite:///path.db (default: DATA/broker.db) or postgresql://...")
    brk.set_defaults(func=cmd_broker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `metropole` console script."""
    logging.basicConfig(
        level=os.environ.get("METROPOLE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"metropole: {exc}", file=sys.stderr)
        return 1
