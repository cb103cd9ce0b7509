"""Northbound clients: any NGSI-LD broker (Orion-LD, Scorpio, Stellio, the embedded one), QuantumLeap, the NGSI-LD temporal API, and the durable outbox between the agents and a broker."""
