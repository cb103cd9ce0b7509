"""Errors answered the QuantumLeap way: a status and {"error": ..., "description": ...}.

QuantumLeap 1.0.0 builds these bodies in each handler of src/reporter/
(query_1T1E1A.py:96-101 "Not Found", :73-78 "AggrMethod cannot be applied",
reporter.py:222-246 "Bad parameters use"); one class here, a few constructors.
"""

from __future__ import annotations


class QLError(Exception):
    """An error answered as {"error": error, "description": description} with `status`."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def not_found() -> QLError:
    """No records (src/reporter/query_1T1E1A.py:96-101)."""
    return QLError(404, "Not Found", "No records were found for such query.")


def bad(description: str, error: str = "Bad parameters use") -> QLError:
    """A 400 for a misused parameter (src/reporter/reporter.py:224-244)."""
    return QLError(400, error, description)


def cannot_aggregate() -> QLError:
    """A method the column's SQL type has no aggregate for (src/reporter/query_1T1E1A.py:73-78)."""
    return QLError(404, "AggrMethod cannot be applied", "AggrMethod cannot be applied on type TEXT and BOOLEAN.")


def ambiguous(entity_id: str) -> QLError:
    """An id shared by entities of several types and no type given (src/reporter/delete.py:13-17, src/exceptions/exceptions.py:25-34)."""
    return QLError(409, "AmbiguousNGSIIdError",
                   f"There are multiple entities with the given entity_id {entity_id}. Please specify entity_type.")
