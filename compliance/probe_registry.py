"""The registry of the broker probe's checks, and what a check raises.

The checks (compliance/probe_checks.py) register themselves with `check`;
the probe (compliance/probe.py) runs what `CHECKS` holds. Neither module
imports the other's runtime: the checks see the Probe as a type only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.media import API

if TYPE_CHECKING:
    from compliance.probe import Probe

__all__ = ["API", "CHECKS", "ERRORS", "CheckSpec", "Failed", "NotSupported", "check"]

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class Failed(Exception):
    """The broker answered, but not as the clause requires."""

    def __init__(self, expected: str, observed: str) -> None:
        super().__init__(f"expected {expected}, observed {observed}")
        self.expected = expected
        self.observed = observed


class NotSupported(Exception):
    """The broker does not implement the operation (501, or no such route)."""


@dataclass(frozen=True)
class CheckSpec:
    """A registered check."""

    id: str
    feature: str
    clause: str
    title: str
    expected: str
    func: Callable[[Probe], str]


CHECKS: list[CheckSpec] = []


def check(feature: str, clause: str, title: str,
          expected: str) -> Callable[[Callable[[Probe], str]], Callable[[Probe], str]]:
    """Register a check of `clause` in `feature`; `expected` says what the clause requires."""

    def register(func: Callable[[Probe], str]) -> Callable[[Probe], str]:
        CHECKS.append(CheckSpec(func.__name__, feature, clause, title, expected, func))
        return func

    return register
