"""Mapping of decoded measures to NGSI-LD entities: JEXL expressions, geo values, timestamps, the engine."""
