"""Hypothesis-driven fuzzing of the platform's input languages and APIs (issue 17): `python -m fuzz`.

    targets.py   q language, geo-query, temporal parameters, payload codecs (in process)
    api.py       API bodies and every operation of the NGSI-LD OpenAPI, through a socket
    runner.py    each target for a bounded time and memory; the report: inputs tried, failures found

`make fuzz` runs it (about 100 s); `tests/fuzz/` runs every target briefly with the other tests.
"""
