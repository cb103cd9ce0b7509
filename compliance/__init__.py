"""Compliance checks for procurement: payloads against the Smart Data Models, brokers against NGSI-LD.

- `payload`: `metropole check payload` (files, folders, stdin; any representation);
- `probe` (+ `probe_checks`): `metropole check broker URL`, one check per function with its clause;
- `report`: text, JSON and standalone HTML rendering of both reports.
"""
