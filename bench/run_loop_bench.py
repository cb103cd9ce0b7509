"""GET by id on the broker of `metropole run` on each event loop (issue 16, uvloop22).

    python -m bench.run_loop_bench [--rounds 2] [--seconds 5] [--clients 8]

Starts `metropole run` (agents' MQTT off, no history API, no dashboard) once per case with
METROPOLE_EVENT_LOOP=asyncio or uvloop, in the order asyncio, uvloop, uvloop, asyncio per round, creates one
entity and drives GET /ngsi-ld/v1/entities/{id} with wrk. Prints each run: requests/s and the `run` process's
CPU-seconds per 1,000 requests (utime + stime from /proc, steadier than the rate on a shared host).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import httpx

from bench.api_bench import cpu_seconds
from bench.procs import PROJECT, free_port, wait_http

ENTITY = "urn:ngsi-ld:AirQualityObserved:run-loop-bench"


def _wrk(url: str, seconds: float, clients: int) -> int:
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", url], capture_output=True, text=True,
                         check=True).stdout
    return int(next(line for line in out.splitlines() if "requests in" in line).split()[0])


def one_run(loop: str, seconds: float, clients: int) -> tuple[float, float]:
    """(requests/s, CPU-s per 1,000 requests) of `metropole run`'s broker on `loop`."""
    data = tempfile.mkdtemp(prefix="run-loop-bench-")
    port = free_port()
    env = {**os.environ, "METROPOLE_EVENT_LOOP": loop, "METROPOLE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen([sys.executable, "-m", "metropole", "run", "--data", data, "--broker-port", str(port),
                             "--history-port", "0", "--dashboard-port", "0", "--agent-mqtt", "off",
                             "--agent-provisioning-port", str(free_port()), "--agent-http-port", str(free_port())],
                            cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/version", proc)
        r = httpx.post(f"{base}/ngsi-ld/v1/entities", json={"id": ENTITY, "type": "AirQualityObserved",
                                                            "no2": {"type": "Property", "value": 41}})
        assert r.status_code == 201, r.text
        url = f"{base}/ngsi-ld/v1/entities/{ENTITY}"
        _wrk(url, 1, clients)  # warm-up
        before = cpu_seconds(proc.pid)
        requests = _wrk(url, seconds, clients)
        used = cpu_seconds(proc.pid) - before
        return requests / seconds, 1000 * used / requests
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(f"metropole run, GET by id, wrk {args.clients} connections x {args.seconds:g} s")
    print(f"{'loop':8} {'req/s':>8} {'CPU-s/1k':>9}")
    for _ in range(args.rounds):
        for loop in ("asyncio", "uvloop", "uvloop", "asyncio"):
            rate, cpu = one_run(loop, args.seconds, args.clients)
            print(f"{loop:8} {rate:8,.0f} {cpu:9.3f}", flush=True)


if __name__ == "__main__":
    main()
