"""The long-running processes' collector settings (metropole.gc_tuning), applied in a process of their own."""

from __future__ import annotations

import subprocess
import sys

from metropole import gc_tuning

PROBE = """
import gc
before = gc.get_threshold()
from metropole.gc_tuning import tune_for_serving
tune_for_serving()
print(before[0], gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:], gc.get_freeze_count() > 0)
"""


def test_serving_freezes_start_up_and_raises_the_young_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] != str(gc_tuning.YOUNG_THRESHOLD)  # the interpreter's default differs: the call changed it
    assert out[1:] == [str(gc_tuning.YOUNG_THRESHOLD), "True", "True"]



BATCH_PROBE = """
import gc
import orjson
from bench.broker_bench import air_quality
from metropole.gc_tuning import tune_for_serving
from models.context.resolver import ContextResolver
from models.normalize import normalize_entity

ctx = ContextResolver().resolve("https://smartdatamodels.org/context.jsonld")
body = orjson.dumps([air_quality(i) for i in range(1000)])
normalize_entity(orjson.loads(body)[0], ctx=ctx)  # the plan compiled, as after the first request
tune_for_serving()
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
for _ in range(5):  # what a batch upsert of 1,000 holds at once: the body, the documents, the before images
    parsed = orjson.loads(body)
    docs = [normalize_entity(e, ctx=ctx) for e in parsed]
    before = orjson.loads(orjson.dumps(docs))
    del parsed, docs, before
print(len(passes), gc.get_count()[0])
"""


def test_a_batch_of_1000_entities_runs_no_collection() -> None:
    # batch19: at 50,000 a young pass ran in nearly every 1,000-entity batch, and found nothing to free
    # (reference counting frees the batch once it is answered); at 400,000 five batches run none
    out = subprocess.run([sys.executable, "-c", BATCH_PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0", out
