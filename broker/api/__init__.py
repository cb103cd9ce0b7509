"""The NGSI-LD HTTP API of the embedded broker: one module per resource, thin handlers over broker.service."""
