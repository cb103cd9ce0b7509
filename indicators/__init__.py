"""Indicators for decision makers, towns and citizens: ATMO, European AQI, WHO 2021, noise Lden, heat.

Pure computations over history (`hourly`, `air`, `noise`, `heat`) read their
thresholds from the project's own tables in `data/` (each row with its
source); `entities` turns results into NGSI-LD entities and `service` reads
measures through the NGSI-LD temporal API and writes indicators back through
the NGSI-LD broker client, so it works against any NGSI-LD broker.
"""
