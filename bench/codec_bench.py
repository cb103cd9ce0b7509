"""Benchmark of the LoRaWAN codecs: decodes per second per codec, and the whole pure path of one uplink.

    python -m bench.codec_bench [--seconds 0.5]

For each codec of the catalogue, its documented example payloads (from its
vectors file) are decoded in a loop: `decode` is decode_uplink alone;
`+profile` adds the projection through the device profile (measures.project);
`+entities` adds the mapping engine (decode, profile and the NGSI-LD entities). A last row times a
The Things Stack uplink envelope parsed (JSON, base64), decoded and mapped.
Single process, one core; the figures are per core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from agents.lorawan import tts
from agents.lorawan.catalog import Codec, catalog, codec_for
from agents.lorawan.measures import entities, project

CODECS = Path(__file__).resolve().parents[1] / "agents" / "codecs"
NOW = "2026-11-26T07:00:00Z"


def _examples(codec: Codec) -> list[tuple[bytes, int]]:
    path = CODECS / codec.id.split("/")[0] / f"{codec.module.rsplit('.', 1)[1]}_vectors.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [(bytes.fromhex(v["input_hex"]), v["fport"]) for v in doc["vectors"] if "output" in v]


def _rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of fn over about `seconds` (after a short warm-up)."""
    for _ in range(200):
        fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(500):
            fn()
        n += 500
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def _cycle(items: list[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def next_item() -> Any:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return next_item


def _row(codec: Codec, seconds: float) -> None:
    examples = _examples(codec)
    pick = _cycle(examples)
    decode = _rate(lambda: codec.decode_uplink(*pick()), seconds)
    profile = _rate(lambda: project(codec, codec.decode_uplink(*pick()).data), seconds)
    mapped = _rate(lambda: entities(codec, codec.decode_uplink(*pick()).data, device_id="bench", observed_at=NOW),
                   seconds)
    print(f"{codec.id:<22} {len(examples):>8} {decode:>12,.0f} {profile:>12,.0f} {mapped:>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()

    print(f"{'codec':<22} {'examples':>8} {'decode/s':>12} {'+profile/s':>12} {'+entities/s':>12}")
    for codec in catalog().values():
        _row(codec, args.seconds)

    codec = codec_for("decentlab/dl-pm")
    body = orjson.dumps({"end_device_ids": {"device_id": "aix-pm-1", "application_ids": {"application_id": "aix"},
                                            "dev_eui": "0004A30B001C0530"},
                         "received_at": "2026-11-26T07:00:00.123456789Z",
                         "uplink_message": {"f_port": 1, "f_cnt": 42,
                                            "frm_payload": "AhtQAA8MJQAlACcAJwAnAfUBBwEsAS0BLQEtZ71hjb0Q",
                                            "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -97,
                                                             "snr": 7.5}]}})
    topic = "v3/aix@metropole/devices/aix-pm-1/up"

    def whole() -> Any:
        up = tts.parse_uplink(body, topic)
        return entities(codec, codec.decode_uplink(up.payload, up.fport).data, device_id=up.dev_eui,
                        observed_at=up.received_at or NOW)

    print(f"\nTTS envelope + decentlab/dl-pm decode + entities: {_rate(whole, args.seconds):,.0f} uplinks/s")


if __name__ == "__main__":
    main()
