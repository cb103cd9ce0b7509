"""NGSI-LD subscriptions and notifications (ETSI GS CIM 009 V1.9.1, clauses 5.2.12-5.2.15, 5.3.1, 5.8, 6.10, 6.11, 7).

    model.py             the Subscription data type: validation, PATCH merge, status, rendering for GET
    storage.py           the storage interface: subscriptions, the durable notification queue, the cursor, the lease
    storage_sqlite.py    ... in the entity store's SQLite file (own connection, own writer thread)
    storage_postgres.py  ... in the entity store's PostgreSQL schema (own small pool)
    matching.py          does a change-log record trigger a subscription (selectors, watchedAttributes, triggers, q/geoQ/scopeQ)
    render.py            the Notification body (5.3.1) in the subscription's @context, format and projection
    dispatcher.py        follows the store's change log, enqueues notifications and advances its cursor in one transaction
    delivery.py          drains the queue per subscription in order: HTTP (httpx) and MQTT, retries with backoff
    mqtt.py              the MQTT binding (clause 7.2): paho clients per broker address, QoS 1 by default
    service.py           the CRUD operations the API calls
    runtime.py           wires them together for one broker process (`Subscriptions`)

The write path never waits for any of this: the entity store appends each
committed write to its change log; the dispatcher follows the log.
"""
