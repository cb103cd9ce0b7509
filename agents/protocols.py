"""The FIWARE southbound protocols by name ("json", "ul"): their payload decoders (agents.codecs).

Apart from agents.codecs so that the package, whose codec modules import its
CodecError, imports none of them.
"""

from __future__ import annotations

from agents.codecs import CodecError, Decoder, ultralight
from agents.codecs import json as json_codec

__all__ = ["DECODERS", "decoder_for"]

DECODERS: dict[str, Decoder] = {"json": json_codec.decode, "ul": ultralight.decode, "ultralight": ultralight.decode}
"""Protocol name (lower case) -> decode function."""


def decoder_for(protocol: str) -> Decoder:
    """The decode function of a protocol name ("json", "ul"); CodecError for another name."""
    try:
        return DECODERS[protocol.lower()]
    except KeyError:
        raise CodecError(f"unknown protocol {protocol!r}") from None
