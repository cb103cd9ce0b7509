"""The bench's MQTT load (bench/mqtt_load.py): each measure stamped with its own TimeInstant, as devices do."""

from __future__ import annotations

from datetime import datetime

import orjson

from bench.mqtt_load import LoadSpec, _payloads


def _stamps(spec: LoadSpec) -> list[datetime]:
    out = []
    for packet in _payloads(spec, list(range(spec.total))):
        body = packet[packet.index(b"{"):]  # the PUBLISH payload follows its topic and packet id
        out.append(datetime.fromisoformat(orjson.loads(body)["TimeInstant"]))
    return out


def test_each_measure_its_own_time_in_schedule_order() -> None:
    stamps = _stamps(LoadSpec("127.0.0.1", 1883, "k", devices=3, total=9, rate=1000.0))
    assert len(set(stamps)) == 9
    assert stamps == sorted(stamps)
    assert (stamps[1] - stamps[0]).total_seconds() == 0.001  # message i is due at i / rate


def test_flat_out_measures_still_differ() -> None:
    stamps = _stamps(LoadSpec("127.0.0.1", 1883, "k", devices=2, total=5))
    assert len(set(stamps)) == 5


def test_same_stamp_keeps_the_former_load() -> None:
    stamps = _stamps(LoadSpec("127.0.0.1", 1883, "k", devices=2, total=5, rate=100.0, same_stamp=True))
    assert len(set(stamps)) == 1
