"""Every codec's vectors file (agents/codecs/**/*_vectors.json), one test per vector."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from agents.codecs import CodecError

CODECS = Path(__file__).resolve().parents[2] / "agents" / "codecs"


def _vectors() -> list[Any]:
    params = []
    for path in sorted(CODECS.rglob("*_vectors.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for vector in doc["vectors"]:
            params.append(pytest.param(doc["codec"], vector, id=f"{path.stem}:{vector['name']}"))
    return params


def test_every_codec_has_vectors() -> None:
    modules = {p.stem for p in CODECS.rglob("*.py") if p.stem != "__init__"}
    with_vectors = {p.stem.removesuffix("_vectors") for p in CODECS.rglob("*_vectors.json")}
    assert modules <= with_vectors, f"codecs without vectors: {sorted(modules - with_vectors)}"


@pytest.mark.parametrize(("codec", "vector"), _vectors())
def test_vector(codec: str, vector: dict[str, Any]) -> None:
    module = importlib.import_module(codec)
    payload = bytes.fromhex(vector["input_hex"]) if "input_hex" in vector else vector["input"].encode("utf-8")
    if "error" in vector:
        with pytest.raises(CodecError) as info:
            module.decode(payload)
        assert vector["error"] in str(info.value)
    else:
        result = module.decode(payload)
        assert result == vector["output"]
        assert result, "a codec never returns an empty list"
