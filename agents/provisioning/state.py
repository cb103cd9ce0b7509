"""What the provisioning app's handlers share: one typed record on `app.state.provisioning`, and its accessor."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from adapters.outbox import Outbox
from agents.commands.service import CommandService
from agents.metrics import Metrics
from agents.provisioning.hooks import Hooks
from agents.registry import Registry
from agents.settings import AgentSettings


@dataclass(frozen=True, slots=True)
class ProvisioningState:
    """The registry the API provisions, the agent's settings, metrics, hooks and (when the agent runs them) outbox
    and command service (agents.provisioning.commands)."""

    settings: AgentSettings
    registry: Registry
    metrics: Metrics
    hooks: Hooks
    outbox: Outbox | None = None
    commands: CommandService | None = None


def provisioning_state(request: Request) -> ProvisioningState:
    """The state of the provisioning app serving this request (set when the app is built)."""
    state: ProvisioningState = request.app.state.provisioning
    return state


__all__ = ["ProvisioningState", "provisioning_state"]
