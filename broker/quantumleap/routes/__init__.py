"""The /v2 routes, one module per resource family, over QuantumLeapService.

    meta.py       GET /v2 (the resource list), /version, /health
    notify.py     POST /v2/notify
    subscribe.py  POST /v2/subscribe
    entities.py   /v2/entities, /v2/entities/{id}[/value], /v2/entities/{id}/attrs/{attr}[/value], DELETE /v2/entities/{id}
    types.py      /v2/types/{type}[/value], /v2/types/{type}/attrs/{attr}[/value], DELETE /v2/types/{type}
    attrs.py      /v2/attrs[/value], /v2/attrs/{attr}[/value]
"""
