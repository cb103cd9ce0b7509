"""The codec catalogue: ids, vectors, and every reading mapped onto a Smart Data Model property or declared unsent."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agents.lorawan.catalog import Codec, UnknownCodec, catalog, codec_for
from agents.lorawan.measures import RANGES, lookup, project
from agents.profiles import device_measurement
from tests.agents.test_profiles import _controlled, _properties

CODECS = Path(__file__).resolve().parents[3] / "agents" / "codecs"
CODEC_IDS = sorted(catalog())


def _vectors_of(codec: Codec) -> dict[str, Any]:
    module = importlib.import_module(codec.module)
    path = Path(module.__file__ or "")
    path = path.with_name(f"{path.stem}_vectors.json")
    assert path.exists(), f"{codec.id}: no {path.name} beside its module"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _decoded_outputs(codec: Codec) -> list[dict[str, Any]]:
    return [v["output"]["data"] for v in _vectors_of(codec)["vectors"] if "output" in v]


def test_the_catalogue_holds_every_vendor_module() -> None:
    modules = {f"{p.parent.name}/{p.stem}" for p in CODECS.glob("*/*.py") if p.stem != "__init__"}
    assert len(modules) == len(catalog()) >= 9
    assert len({c.vendor for c in catalog().values()} - {"Cayenne"}) >= 4
    assert len([c for c in catalog().values() if c.vendor != "Cayenne"]) >= 8


def test_ids_are_unique_vendor_slash_model_and_match_their_module() -> None:
    for codec_id, codec in catalog().items():
        assert codec_id == codec.id and re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", codec_id)
        module = codec.module
        assert module.startswith(f"agents.codecs.{codec_id.split('/')[0]}.")
        assert module.rsplit(".", 1)[1] == codec_id.split("/")[1].replace("-", "_"), (codec_id, module)
    assert len({c.id for c in catalog().values()}) == len(catalog())


def test_lookup_by_id_ignores_case_and_names_the_known_ones() -> None:
    assert codec_for("Decentlab/DL-PM") is catalog()["decentlab/dl-pm"]
    with pytest.raises(UnknownCodec, match="known: cayenne/lpp"):
        codec_for("acme/thermo-9000")


@pytest.mark.parametrize("codec_id", CODEC_IDS)
def test_every_codec_has_documented_vectors(codec_id: str) -> None:
    codec = codec_for(codec_id)
    doc = _vectors_of(codec)
    assert doc["codec"] == codec.module
    assert doc["sources"] and all(isinstance(s, str) and len(s) > 20 for s in doc["sources"].values())
    assert _decoded_outputs(codec), "at least one decoded example"
    assert any("error" in v for v in doc["vectors"]), "at least one refused payload"
    assert codec.documents and all(d.startswith("https://") for d in codec.documents)
    assert bool(doc.get("downlinks")) == (codec.encode_downlink is not None)


@pytest.mark.parametrize("codec_id", CODEC_IDS)
def test_every_profile_attribute_is_a_property_of_its_model(sdm_reference: Path, codec_id: str) -> None:
    codec = codec_for(codec_id)
    controlled = _controlled(sdm_reference)
    for profile in codec.profiles:
        allowed = _properties(sdm_reference, profile.model)
        missing = [m.attribute for m in profile.measurements if m.attribute not in allowed]
        assert not missing, f"{codec_id}: not properties of {profile.model}: {missing}"
        assert set(profile.controlled_properties()) <= controlled
        assert all(m.unit_code or m.attribute == "relativeHumidity" for m in profile.measurements)
    assert len({p.model for p in codec.profiles}) == len(codec.profiles)


@pytest.mark.parametrize("codec_id", CODEC_IDS)
def test_every_reading_of_the_examples_is_mapped_or_declared_unsent(codec_id: str) -> None:
    codec = codec_for(codec_id)
    seen = set()
    for data in _decoded_outputs(codec):
        for key in data:
            seen.add(key)
            mapped = lookup(codec, key) is not None or device_measurement(key) is not None
            declared = key in codec.not_forwarded or re.sub(r"_\d+$", "", key) in codec.not_forwarded
            assert mapped != declared, f"{codec_id}: {key!r} is {'both mapped and declared' if mapped else 'neither'}"
    assert all(len(reason) > 15 for reason in codec.not_forwarded.values())
    mapped_keys = {m.key for p in codec.profiles for m in p.measurements}
    assert mapped_keys & {re.sub(r"_\d+$", "", k) for k in seen}, f"{codec_id}: no example reaches its profile"


def _bounds(folder: Path, model: str, attribute: str) -> tuple[float | None, float | None]:
    """The (minimum, maximum) a model's schema files give an attribute (first definition found)."""
    found: list[tuple[float | None, float | None]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            prop = node.get("properties", {}).get(attribute)
            if isinstance(prop, dict) and "type" in prop:
                found.append((prop.get("minimum"), prop.get("maximum")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for name in (f"{model}_schema.json", "weather-schema.json", "common-schema.json"):
        walk(json.loads((folder / name).read_text(encoding="utf-8")))
        if found:
            return found[0]
    return None, None


def test_the_ranges_table_agrees_with_the_schemas(sdm_reference: Path) -> None:
    for codec in catalog().values():
        for profile in codec.profiles:
            for m in profile.measurements:
                expected = _bounds(sdm_reference, profile.model, m.attribute)
                assert RANGES.get(m.attribute, (None, None)) == expected, (profile.model, m.attribute, expected)


def test_a_reading_outside_the_model_is_left_out_with_a_warning() -> None:
    codec = codec_for("decentlab/dl-pm")
    projection = project(codec, {"air_humidity": 101.2, "air_temperature": 20.5, "firmware": "9", "device_id": 1})
    ((profile, group),) = projection.groups
    assert profile.model == "AirQualityObserved" and group == {"air_temperature": 20.5}
    assert [w.split(" ")[0] for w in projection.warnings] == ["air_humidity", "reading"]
    assert "relativeHumidity 1.012, outside the model's 0..1" in projection.warnings[0]
    assert "'firmware' has no attribute" in projection.warnings[1]


def test_a_device_reading_that_is_not_a_number_is_left_out_not_fatal() -> None:
    projection = project(codec_for("milesight/em300-th"), {"battery": "full", "temperature": 20.0})
    assert projection.device == {} and [g for _, g in projection.groups] == [{"temperature": 20.0}]
    assert projection.warnings[0].startswith("battery: ")
