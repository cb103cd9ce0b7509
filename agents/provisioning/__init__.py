"""The provisioning API of the agents (port 4041), compatible with the FIWARE IoT Agent one."""

from agents.provisioning.app import create_provisioning_app

__all__ = ["create_provisioning_app"]
