"""The QuantumLeap-compatible history API (/v2, QuantumLeap 1.0) over the broker's temporal history."""

from broker.quantumleap.app import QL_VERSION, create_quantumleap_app

__all__ = ["QL_VERSION", "create_quantumleap_app"]
