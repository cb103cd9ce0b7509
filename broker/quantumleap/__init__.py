"""The QuantumLeap-compatible history API (/v2, QuantumLeap 1.0.0) over the broker's temporal history.

    app.py        create_quantumleap_app: the FastAPI app, its routers and error answers
    routes/       one module per resource family (entities, types, attrs, notify, subscribe, meta)
    service.py    QuantumLeapService: selection, rows, notifications, deletes over the history
    series.py     QuantumLeap's rows rebuilt from attribute instances; paging and aggregation
    render.py     raw / per-entity / global views of the rows
    notify.py     notification bodies (NGSI-v2, NGSI-LD) -> temporal entities
    names.py      attribute and type names as QuantumLeap shows and matches them
    params.py     query parameters and headers (tenant, service paths)
    shapes.py     1.0.0 or master answer shapes
    settings.py   METROPOLE_HISTORY_* settings
    errors.py     QLError and its constructors
"""

from broker.quantumleap.app import QL_VERSION, create_quantumleap_app

__all__ = ["QL_VERSION", "create_quantumleap_app"]
