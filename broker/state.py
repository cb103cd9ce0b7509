"""What a running broker holds: one typed record on `app.state.broker`, and its accessors.

The lifespan (broker.app) opens the components in the order of the fields
below, sets the record once all have started, and stops them in reverse
(the store last). Handlers read it with `broker_state(request)`; what may run
before the lifespan has opened it (readiness checks, /metrics, the /v2
history API mounted or served on its own port) uses `opened(app)`, None
until then.

Other names on `app.state` are not part of it: `authenticator` (set when the
app is built, before any lifespan: broker.ops). broker.federation reads
`forwarder` and `subscription_relay` off this record
(broker.federation.consumption.app_forwarder, broker.federation.subs.relay_of)
with a TYPE_CHECKING-only import of it: this module imports broker.federation,
so a run-time import back would be a package cycle (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp

from broker.federation.csubs import CSourceSubscriptions
from broker.federation.forward import Forwarder
from broker.federation.service import RegistrationService
from broker.federation.subs import SubscriptionRelay
from broker.service.batch import BatchService
from broker.service.discovery import DiscoveryService
from broker.service.entities import EntityService
from broker.service.queries import QueryService
from broker.service.temporal import TemporalService
from broker.settings import BrokerSettings
from broker.store.base import Store
from broker.subscriptions.runtime import Subscriptions
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.runtime import ChangeConsumer, TemporalRuntime
from broker.temporal.storage import HistoryStorage
from models.context import ContextResolver
from storage.database import Database


@dataclass(slots=True, kw_only=True)
class BrokerState:
    """The components of one broker process (broker.app.open_broker starts them, close_broker stops them)."""

    settings: BrokerSettings
    database: Database
    """The store's database backend (storage.database): the connections store, history and subscriptions share."""
    store: Store
    resolver: ContextResolver
    identity: str
    """This broker's ContextSourceIdentity id (clause 5.2.40)."""
    started_at: float
    """time.time() at start: contextSourceUptime."""
    entities: EntityService
    batch: BatchService
    queries: QueryService
    discovery: DiscoveryService
    subscriptions: Subscriptions
    registrations: RegistrationService
    csource_subscriptions: CSourceSubscriptions
    forwarder: Forwarder
    subscription_relay: SubscriptionRelay
    """The copies of this broker's subscriptions at registered sources (broker.federation.subs)."""
    history_runtime: TemporalRuntime
    """History, its recorder and the change-log trim (broker.temporal.runtime)."""
    temporal: TemporalService
    change_consumers: list[ChangeConsumer] = field(default_factory=list)
    """What the change-log trim waits for: the subscription dispatcher, the history recorder."""

    @property
    def history(self) -> HistoryStorage:
        """The temporal history storage."""
        return self.history_runtime.history

    @property
    def recorder(self) -> HistoryRecorder:
        """The recorder following the change log into history."""
        return self.history_runtime.recorder


def opened(app: ASGIApp) -> BrokerState | None:
    """The state of a broker app whose lifespan has started it, else None."""
    state: BrokerState | None = getattr(getattr(app, "state", None), "broker", None)
    return state


def broker_state(request: Request) -> BrokerState:
    """The state of the broker app serving this request (its lifespan has run: handlers only serve after it)."""
    state: BrokerState = request.app.state.broker
    return state


def state_source(app: ASGIApp) -> Callable[[], BrokerState | None]:
    """`opened(app)` as a callable: what the /v2 history API reads the broker through."""
    return lambda: opened(app)


__all__ = ["BrokerState", "broker_state", "opened", "state_source"]
