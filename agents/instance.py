"""The installation's identity: a random id kept in the data folder, for the MQTT client id.

A persistent MQTT session belongs to its client id. A fixed default
(`metropole-agent`) made two installations on one Mosquitto take the
session from each other, and let one inherit the other's queued messages.
The id here is drawn once per data folder and kept there: the same across
restarts of that installation (its session and queued measures survive),
different for every other installation, including replicas with volumes
of their own.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["default_client_id", "installation_id"]

ID_FILE = "agent-installation-id"


def installation_id(data_dir: Path) -> str:
    """The id kept in `data_dir` (made, and written atomically, on first use)."""
    path = data_dir / ID_FILE
    try:
        found = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        found = ""
    if found:
        return found
    data_dir.mkdir(parents=True, exist_ok=True)
    new = secrets.token_hex(6)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(new + "\n", encoding="ascii")
    try:
        os.link(temporary, path)  # fails if another process wrote one meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


def default_client_id(data_dir: Path) -> str:
    """`metropole-agent-<installation id>`: stable per data folder, unique per installation."""
    return f"metropole-agent-{installation_id(data_dir)}"
