"""/iot/codecs: the LoRaWAN codec catalogue, so that an integrator picks a device by vendor and model.

    GET /iot/codecs           every codec: id (what provisioning's `codec` names), vendor, model,
                              the entities its readings become, whether it takes commands, its FPorts
                              and the vendor documents it follows
    GET /iot/codecs/{vendor}/{model}   one of them (404 CODEC_NOT_FOUND)

Read-only and the same for every tenant: the catalogue is the agent's code.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agents.lorawan.catalog import Codec, UnknownCodec, catalog, codec_for

__all__ = ["router"]


def _describe(codec: Codec) -> dict[str, Any]:
    return {"id": codec.id, "vendor": codec.vendor, "model": codec.model, "description": codec.description,
            "entities": [p.model for p in codec.profiles], "commands": codec.encode_downlink is not None,
            "uplink_ports": list(codec.uplink_ports), "documents": list(codec.documents)}


router = APIRouter()
"""The catalogue routes."""


@router.get("/iot/codecs")
async def list_codecs() -> JSONResponse:
    """Every codec of the catalogue."""
    codecs = [_describe(c) for c in catalog().values()]
    return JSONResponse({"count": len(codecs), "codecs": codecs})


@router.get("/iot/codecs/{vendor}/{model}")
async def get_codec(vendor: str, model: str) -> JSONResponse:
    """One codec, by vendor and model (404 CODEC_NOT_FOUND)."""
    try:
        return JSONResponse(_describe(codec_for(f"{vendor}/{model}")))
    except UnknownCodec as exc:
        return JSONResponse({"name": "CODEC_NOT_FOUND", "message": str(exc)}, status_code=404)
