"""The README's curl examples work as written against a running broker.

The first `sh` block under "Using the embedded broker" is run by bash, with
only the broker's address changed to the test broker's, and its output
checked step by step.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _curl_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using the embedded broker", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its curl examples"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples(broker_url: str, tenant: str) -> None:
    script = _curl_block().replace("http://127.0.0.1:1026", broker_url)
    # Each run gets its own tenant so the examples' fixed ids never collide.
    script = script.replace("curl ", f"curl -H 'NGSILD-Tenant: {tenant}' ")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    statuses = re.findall(r"^HTTP/1\.1 (\d{3})", out, re.MULTILINE)
    # create 201, upsert 201, query 200, patch 204, delete 204
    assert statuses == ["201", "201", "200", "204", "204"], out
    assert "Location: /ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:Aix-Mirabeau" in out.replace("location:", "Location:")
    assert '"no2":41' in out.replace(" ", "")  # the keyValues read
    assert re.search(r"(?i)^ngsild-results-count: 1\r?$", out, re.MULTILINE), out  # q=no2>50 matches the Vieux-Port only
    assert "urn:ngsi-ld:AirQualityObserved:Marseille-VieuxPort" in out
