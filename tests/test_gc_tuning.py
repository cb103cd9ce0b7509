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

