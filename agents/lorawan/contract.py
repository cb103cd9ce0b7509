"""The LoRa Alliance payload codec contract (TS013-1.0.0) in Python, and the byte reader codecs share.

TS013 `decodeUplink({bytes, fPort})` returns `{data, warnings, errors}`; errors
mean the decoding failed. Here a vendor module writes

    @uplink_decoder
    def decode_uplink(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]: ...

and raises :class:`PayloadError` with the reason when the bytes are not what
its document says (short, long, unknown port, unknown channel, bad version).
The decorator turns that into `Decoded(data={}, warnings, errors=[reason])`, so
what callers get is `decode_uplink(payload, fport) -> Decoded` and never an
exception: a codec's own bug (an IndexError, say) is caught too and reported as
`internal codec error: ...`, which the fuzz tests look for and fail on.

`encode_downlink(command) -> Encoded(fport, payload, warnings, errors)` is
the same contract the other way (TS013 `encodeDownlink({data})`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, NamedTuple

__all__ = [
    "INTERNAL_ERROR", "Decoded", "DownlinkEncoder", "Encoded", "PayloadError", "Reader", "UplinkDecoder",
    "downlink_encoder", "integer", "unknown_port", "uplink_decoder",
]

#: The prefix of an error that is the codec's fault, not the payload's.
INTERNAL_ERROR = "internal codec error"


class PayloadError(ValueError):
    """The payload (or a downlink command) breaks the vendor's documented format; the message says how."""


class Decoded(NamedTuple):
    """TS013 decodeUplink output: the decoded readings, warnings, and errors (decoding failed when not empty)."""

    data: dict[str, Any]
    warnings: list[str]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """The TS013 JSON shape (data left out when decoding failed, as TS013 allows)."""
        out: dict[str, Any] = {"data": self.data} if not self.errors else {}
        return {**out, "warnings": self.warnings, "errors": self.errors}


class Encoded(NamedTuple):
    """TS013 encodeDownlink output: the FPort and bytes to queue, warnings, and errors (nothing to send when any)."""

    fport: int
    payload: bytes
    warnings: list[str]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


UplinkDecoder = Callable[[bytes, int], Decoded]
DownlinkEncoder = Callable[[Mapping[str, Any]], Encoded]


def uplink_decoder(fn: Callable[[bytes, int, list[str]], dict[str, Any]]) -> UplinkDecoder:
    """Wrap a codec body into the TS013 contract: PayloadError and any bug become errors, never exceptions."""

    @wraps(fn)
    def decode_uplink(payload: bytes, fport: int) -> Decoded:
        warnings: list[str] = []
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            return Decoded({}, warnings, [f"payload must be bytes, not {type(payload).__name__}"])
        if isinstance(fport, bool) or not isinstance(fport, int) or not 0 <= fport <= 255:
            return Decoded({}, warnings, [f"FPort must be an integer 0-255, not {fport!r}"])
        if not payload:
            return Decoded({}, warnings, ["empty payload"])
        try:
            data = fn(bytes(payload), fport, warnings)
        except PayloadError as exc:
            return Decoded({}, warnings, [str(exc)])
        except Exception as exc:  # noqa: BLE001 - a codec bug must not stop the agent; the fuzz tests catch these
            return Decoded({}, warnings, [f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"])
        if not data:
            return Decoded({}, warnings, ["no reading in the payload"])
        return Decoded(data, warnings, [])

    return decode_uplink


def downlink_encoder(fn: Callable[[Mapping[str, Any], list[str]], tuple[int, bytes]]) -> DownlinkEncoder:
    """Wrap a downlink body into the TS013 contract, as :func:`uplink_decoder` does for uplinks."""

    @wraps(fn)
    def encode_downlink(command: Mapping[str, Any]) -> Encoded:
        warnings: list[str] = []
        if not isinstance(command, Mapping):
            return Encoded(0, b"", warnings, [f"a command is an object, not {type(command).__name__}"])
        try:
            fport, payload = fn(command, warnings)
        except PayloadError as exc:
            return Encoded(0, b"", warnings, [str(exc)])
        except Exception as exc:  # noqa: BLE001 - same reason as for uplinks
            return Encoded(0, b"", warnings, [f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"])
        return Encoded(fport, payload, warnings, [])

    return encode_downlink


def integer(command: Mapping[str, Any], name: str, low: int, high: int) -> int:
    """An integer parameter of a downlink command, within the vendor's documented range."""
    value = command.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise PayloadError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise PayloadError(f"{name} must be within {low}..{high}, not {value}")
    return value


_U16BE, _I16BE, _U16LE, _I16LE = struct.Struct(">H"), struct.Struct(">h"), struct.Struct("<H"), struct.Struct("<h")
_U32BE, _I32BE, _U32LE, _I32LE = struct.Struct(">I"), struct.Struct(">i"), struct.Struct("<I"), struct.Struct("<i")


class Reader:
    """A cursor over a payload whose reads fail with the offset and what was being read, never an IndexError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def _need(self, n: int, what: str) -> int:
        at = self.pos
        if at + n > len(self.buf):
            raise PayloadError(f"payload too short: {what} needs {n} byte(s) at offset {at}, "
                               f"{len(self.buf) - at} left of {len(self.buf)}")
        self.pos = at + n
        return at

    def take(self, n: int, what: str) -> bytes:
        at = self._need(n, what)
        return self.buf[at:at + n]

    def u8(self, what: str) -> int:
        return self.buf[self._need(1, what)]

    def i8(self, what: str) -> int:
        v = self.buf[self._need(1, what)]
        return v - 256 if v > 127 else v

    def u16be(self, what: str) -> int:
        return int(_U16BE.unpack_from(self.buf, self._need(2, what))[0])

    def i16be(self, what: str) -> int:
        return int(_I16BE.unpack_from(self.buf, self._need(2, what))[0])

    def u16le(self, what: str) -> int:
        return int(_U16LE.unpack_from(self.buf, self._need(2, what))[0])

    def i16le(self, what: str) -> int:
        return int(_I16LE.unpack_from(self.buf, self._need(2, what))[0])

    def u24be(self, what: str) -> int:
        return int.from_bytes(self.buf[(at := self._need(3, what)):at + 3], "big")

    def i24be(self, what: str) -> int:
        return int.from_bytes(self.buf[(at := self._need(3, what)):at + 3], "big", signed=True)

    def u32be(self, what: str) -> int:
        return int(_U32BE.unpack_from(self.buf, self._need(4, what))[0])

    def i32be(self, what: str) -> int:
        return int(_I32BE.unpack_from(self.buf, self._need(4, what))[0])

    def u32le(self, what: str) -> int:
        return int(_U32LE.unpack_from(self.buf, self._need(4, what))[0])

    def i32le(self, what: str) -> int:
        return int(_I32LE.unpack_from(self.buf, self._need(4, what))[0])

    def expect_end(self, what: str = "the last field") -> None:
        """The payload must end here: trailing bytes mean a different format or a corrupt frame."""
        if self.pos != len(self.buf):
            raise PayloadError(f"payload too long: {len(self.buf) - self.pos} unexpected byte(s) after {what} "
                               f"at offset {self.pos}")


def unknown_port(fport: int, known: tuple[int, ...]) -> PayloadError:
    """The error for an FPort the vendor does not document."""
    ports = ", ".join(str(p) for p in known)
    return PayloadError(f"unknown FPort {fport}: the vendor documents uplinks on FPort {ports}")
