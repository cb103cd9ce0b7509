"""The broker on a real socket on each store (the fixtures of tests/broker), for hostile input."""

from tests.broker.conftest import broker_url, client, context_server, raw_client, tenant  # noqa: F401
