"""The codec catalogue: every vendor model under agents/codecs/<vendor>/<model>.py, by id.

Each model module declares one :class:`Codec` named ``CODEC``: its id
(`<vendor>/<model>`, what provisioning names), the vendor documents its decoder
follows, its TS013 functions, and its device profile (data: which readings
become which Smart Data Model attributes, and why the others are not sent).
Adding a device is adding one module and its vectors file; nothing else is
registered by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from types import MappingProxyType

from agents.lorawan.contract import DownlinkEncoder, UplinkDecoder
from agents.profiles import Profile

__all__ = ["Codec", "UnknownCodec", "catalog", "codec_for"]

CODECS_PACKAGE = "agents.codecs"


class UnknownCodec(LookupError):
    """No codec has this id."""


@dataclass(frozen=True, slots=True)
class Codec:
    """One vendor model: how to read its payloads and what they become."""

    id: str  # "<vendor>/<model>", lower case, as provisioning names it
    vendor: str
    model: str
    description: str
    documents: tuple[str, ...]  # the vendor's public documents the decoder follows
    decode_uplink: UplinkDecoder
    profiles: tuple[Profile, ...]  # the entities its readings go to; the first is the device's main entity
    not_forwarded: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # key -> why not
    encode_downlink: DownlinkEncoder | None = None
    uplink_ports: tuple[int, ...] = ()  # the FPorts the vendor documents (empty: any)
    module: str = ""  # the module declaring it, set by the catalogue

    @property
    def entity_type(self) -> str:
        """The Smart Data Model of the device's main entity."""
        return self.profiles[0].model


@cache
def catalog() -> Mapping[str, Codec]:
    """Every codec by id, found by walking the vendor packages of agents.codecs once."""
    package = importlib.import_module(CODECS_PACKAGE)
    table: dict[str, Codec] = {}
    for vendor in pkgutil.iter_modules(package.__path__):
        if not vendor.ispkg:
            continue  # the top-level modules are the FIWARE protocols (json, ultralight)
        vendor_pkg = importlib.import_module(f"{CODECS_PACKAGE}.{vendor.name}")
        for model in pkgutil.iter_modules(vendor_pkg.__path__):
            module = importlib.import_module(f"{CODECS_PACKAGE}.{vendor.name}.{model.name}")
            codec = getattr(module, "CODEC", None)
            if not isinstance(codec, Codec):
                raise TypeError(f"{module.__name__} declares no CODEC")
            if codec.id in table:
                raise ValueError(f"codec id {codec.id!r} declared twice")
            table[codec.id] = replace(codec, module=module.__name__)
    return MappingProxyType(dict(sorted(table.items())))


def codec_for(codec_id: str) -> Codec:
    """The codec of an id (`decentlab/dl-pm`); case does not matter."""
    try:
        return catalog()[codec_id.strip().lower()]
    except KeyError:
        raise UnknownCodec(f"unknown codec {codec_id!r}; known: {', '.join(catalog())}") from None
