"""HTTP plumbing shared by the platform's ASGI apps (NGSI-LD broker, history API, agents' APIs).

It imports nothing of ours, so the agents and the broker may both use it
without importing each other.
"""
