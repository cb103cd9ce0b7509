"""Milesight's channel format, shared by its EM/AM/WS sensors, and its downlinks.

As Milesight documents it for every model (the user guides' "Uplink Payload"
section and github.com/Milesight-IoT/SensorDecoders, one README per model): a
payload is a sequence of channels, each `id (1 B) + type (1 B) + data`, the
data's length and meaning fixed by the (id, type) pair, little-endian. Channel
0xFF carries device information (sent once after joining). FPort 85 by
default; the application port is configurable, so any port 1..223 is read.

Milesight's decoders stop silently at an unknown channel and return what they
read so far; here an unknown channel is an error (its length is unknown, so
nothing after it can be trusted), with its offset.

Downlinks: `0xFF` + command + little-endian value on the same port (the
encoders beside each README: report interval `FF 03 uint16 seconds`, reboot
`FF 10 FF`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from agents.lorawan.contract import PayloadError, Reader, integer

DEFAULT_PORT = 85

Read = Callable[[Reader], Any]


class Channel(NamedTuple):
    """One (channel id, type) pair: what it is and how to read its data."""

    name: str
    read: Read


def _version(r: Reader) -> str:
    b = r.u8("ipso version")
    return f"v{b >> 4}.{b & 0x0F}"


def _hardware(r: Reader) -> str:
    b = r.take(2, "hardware version")
    return f"v{b[0]}.{b[1] >> 4}"


def _firmware(r: Reader) -> str:
    b = r.take(2, "firmware version")
    return f"v{b[0]}.{b[1]}"


_CLASSES = {0: "Class A", 1: "Class B", 2: "Class C", 3: "Class CtoB"}

#: Device information, common to every model (channel 0xFF).
DEVICE_INFO: Mapping[tuple[int, int], Channel] = {
    (0xFF, 0x01): Channel("ipso_version", _version),
    (0xFF, 0x09): Channel("hardware_version", _hardware),
    (0xFF, 0x0A): Channel("firmware_version", _firmware),
    (0xFF, 0xFF): Channel("tsl_version", _firmware),
    (0xFF, 0x16): Channel("sn", lambda r: r.take(8, "serial number").hex()),
    (0xFF, 0x0F): Channel("lorawan_class", lambda r: _CLASSES.get(r.u8("lorawan class"), "unknown")),
    (0xFF, 0xFE): Channel("reset_event", lambda r: "reset" if r.u8("reset event") else "normal"),
    (0xFF, 0x0B): Channel("device_status", lambda r: "on" if r.u8("device status") else "off"),
}

#: Channels several models share, with the reading each README gives.
BATTERY = {(0x01, 0x75): Channel("battery", lambda r: r.u8("battery"))}  # %
TEMPERATURE = {(0x03, 0x67): Channel("temperature", lambda r: r.i16le("temperature") / 10)}  # degC
HUMIDITY = {(0x04, 0x68): Channel("humidity", lambda r: r.u8("humidity") / 2)}  # %RH


def decoder(channels: Mapping[tuple[int, int], Channel], model: str) -> Callable[[bytes, int, list[str]], dict[str, Any]]:
    """The TS013 body of a Milesight model reading these channels (wrap it with uplink_decoder)."""
    table = {**DEVICE_INFO, **channels}

    def decode(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
        if not 1 <= fport <= 223:
            raise PayloadError(f"unknown FPort {fport}: Milesight devices send on an application port 1..223 "
                               f"(default {DEFAULT_PORT})")
        r = Reader(payload)
        data: dict[str, Any] = {}
        while r.remaining:
            at = r.pos
            key = (r.u8("channel id"), r.u8("channel type"))
            channel = table.get(key)
            if channel is None:
                raise PayloadError(f"unknown channel 0x{key[0]:02X} type 0x{key[1]:02X} at offset {at}: "
                                   f"not in the {model} payload definition")
            value = channel.read(r)
            if channel.name == "history":
                data.setdefault("history", []).append(value)
            else:
                if channel.name in data:
                    warnings.append(f"channel {channel.name} sent twice; the last value is kept")
                data[channel.name] = value
        return data

    return decode


# -- downlinks --------------------------------------------------------------------------------------------

def report_interval(command: Mapping[str, Any]) -> bytes:
    """`report_interval` seconds (1..64800): FF 03 + uint16 LE."""
    return b"\xff\x03" + integer(command, "report_interval", 1, 64800).to_bytes(2, "little")


def reboot(command: Mapping[str, Any]) -> bytes:
    """`reboot: 1`: FF 10 FF (0 sends nothing, as Milesight's encoders do)."""
    return b"\xff\x10\xff" if integer(command, "reboot", 0, 1) else b""


def encoder(commands: Mapping[str, Callable[[Mapping[str, Any]], bytes]]) -> Callable[
        [Mapping[str, Any], list[str]], tuple[int, bytes]]:
    """The TS013 downlink body for these commands: each key of the command object adds its bytes, in order."""

    def encode(command: Mapping[str, Any], warnings: list[str]) -> tuple[int, bytes]:
        unknown = [k for k in command if k not in commands]
        if unknown:
            raise PayloadError(f"unknown command(s) {', '.join(map(repr, unknown))}; known: {', '.join(commands)}")
        out = b"".join(commands[k](command) for k in command)
        if not out:
            raise PayloadError("nothing to send")
        return DEFAULT_PORT, out

    return encode
