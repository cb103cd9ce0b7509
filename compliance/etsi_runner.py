"""Running the ETSI NGSI-LD conformance suite against a broker URL, through the shared runner.

The suite and its runner (`run-etsi.sh`, which builds its own virtual
environment with Robot Framework on first use, serves the suite's @context
files offline and starts the notification receiver and context-source mock
the tests need) are not part of the project: they live beside it, in
`../shared/conformance`, or wherever `--etsi-suite` / `METROPOLE_ETSI_DIR`
says. This module finds them, picks the harness's ports, runs the runner in a
session of its own and, whatever happens (failure, Ctrl-C, SIGTERM), ends
every process of that session before returning.

Harness ports: the notification receiver and the context-source mock must be
reachable *from the broker*, so for a broker on another machine the harness
binds to and advertises `host` (this machine's address as the broker sees it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

PROJECT = Path(__file__).resolve().parent.parent
ENV_DIR = "METROPOLE_ETSI_DIR"
RUNNER = "run-etsi.sh"


class EtsiSuiteNotFound(RuntimeError):
    """The conformance suite and its runner are not where they were looked for."""


def find_conformance(explicit: str | Path | None = None) -> Path:
    """The folder holding `run-etsi.sh` and `etsi-suite/`: the given one, $METROPOLE_ETSI_DIR,
    or `shared/conformance` beside the project (or beside the current directory)."""
    given = explicit or os.environ.get(ENV_DIR)
    candidates = [Path(given)] if given else [PROJECT.parent / "shared" / "conformance",
                                              Path.cwd().parent / "shared" / "conformance"]
    for c in candidates:
        if (c / RUNNER).is_file() and (c / "etsi-suite" / "TP" / "NGSI-LD").is_dir():
            return c.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise EtsiSuiteNotFound(f"the ETSI conformance suite ({RUNNER} and etsi-suite/) is not in {looked}; "
                            f"give its folder with --etsi-suite or {ENV_DIR}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now at `host`."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Harness:
    """Where the runner's helper servers listen, as the broker must reach them."""

    host: str = "127.0.0.1"
    notify_port: int = 8085  # notification receiver (subscription tests)
    csource_port: int = 8086  # context-source mock (registration and distributed-operation tests)
    ctxserver_port: int = 8087  # the suite's own @context mock (5.13 tests)
    ctx_port: int = 8088  # offline server of the suite's @context files

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> Harness:
        """Four ports free at `host` right now."""
        ports: list[int] = []
        while len(ports) < 4:
            p = free_port(host)
            if p not in ports:
                ports.append(p)
        return cls(host, *ports)

    @classmethod
    def from_base(cls, host: str, base: int) -> Harness:
        """Ports base, base+1, base+2, base+3 (e.g. 27085 -> 27085..27088)."""
        return cls(host, base, base + 1, base + 2, base + 3)

    def describe(self) -> str:
        """`host` and the four ports, for the console."""
        return (f"{self.host} (notifications :{self.notify_port}, context source :{self.csource_port}, "
                f"@context :{self.ctxserver_port} and :{self.ctx_port})")

    def env(self) -> dict[str, str]:
        """The runner's environment knobs for these ports."""
        return {"ETSI_HOST": self.host, "ETSI_NOTIFY_PORT": str(self.notify_port),
                "ETSI_CSOURCE_PORT": str(self.csource_port), "ETSI_CTXSERVER_PORT": str(self.ctxserver_port),
                "ETSI_CTX_PORT": str(self.ctx_port)}


@dataclass(frozen=True)
class SuiteRun:
    """One run of the suite: against what, with which harness, which tests, results where."""

    broker_url: str
    outdir: Path
    conformance: Path
    harness: Harness = field(default_factory=Harness)
    venv: Path | None = None  # the runner's virtual environment (default: $ETSI_VENV or ./.etsi-venv)
    with_mqtt: bool = False  # also the 12 MQTT-notification tests (an MQTT broker at mqtt_host:1883)
    mqtt_host: str = "127.0.0.1"
    temporal_url: str | None = None  # a broker whose temporal API is elsewhere
    selection: tuple[str, ...] = ()  # robot arguments and TP/... paths, e.g. ("--test", "018_01_01*")
    max_seconds: int | None = None  # wall-clock cap of the robot run (runner default 5400)

    @property
    def resolved_venv(self) -> Path:
        """The runner's virtual environment: `venv`, else $ETSI_VENV, else ./.etsi-venv (the runner's default)."""
        return (self.venv or Path(os.environ.get("ETSI_VENV") or Path.cwd() / ".etsi-venv")).resolve()

    def command(self) -> list[str]:
        """The runner's command line."""
        return ["bash", str(self.conformance / RUNNER), self.broker_url, str(self.outdir), *self.selection]

    def environment(self, suite: Path | None = None) -> dict[str, str]:
        """The process environment of the runner; `suite`: the copy of etsi-suite/ it works in."""
        env = dict(os.environ)
        env.update(self.harness.env())
        if suite is not None:
            env["ETSI_SUITE"] = str(suite)
        env["ETSI_VENV"] = str(self.resolved_venv)
        env["ETSI_WITH_MQTT"] = "1" if self.with_mqtt else "0"
        env["ETSI_MQTT_HOST"] = self.mqtt_host
        if self.temporal_url:
            env["ETSI_TEMPORAL_URL"] = self.temporal_url
        if self.max_seconds is not None:
            env["ETSI_MAX_SECONDS"] = str(self.max_seconds)
        return env


@dataclass(frozen=True)
class RunOutcome:
    """What the runner left: its exit code, wall time, where output.xml is, its closing line."""

    returncode: int
    seconds: float
    outdir: Path
    closing_line: str

    @property
    def output_xml(self) -> Path:
        return self.outdir / "output.xml"


def _session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (the runner, robot under `timeout`, the harness servers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def end_session(*procs: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 5.0) -> None:
    """Stop processes started with start_new_session=True and everything they started, all at once.

    `timeout` (used by the runner) moves robot into a process group of its own, so a
    signal to the runner's group would miss it: every process of each session gets
    SIGTERM, and SIGKILL when it is still there after `grace` seconds.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = [pid for p in procs for pid in (_session_pids(p.pid) if Path("/proc").is_dir() else [p.pid])]
        if not pids and all(p.poll() is not None for p in procs):
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(p.poll() is not None for p in procs) and not any(_alive(pid) for pid in pids):
                return
            time.sleep(0.05)
    for p in procs:
        p.wait(timeout=5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[-1][:1] != "Z"
    except OSError:
        return False


def ensure_venv(venv: Path, conformance: Path, stream: TextIO | None = sys.stderr) -> None:
    """Create the runner's virtual environment as the runner would on first use (`python3 -m venv`, then
    the suite's requirements.txt from PyPI), once, under a lock: two runners started at once on a fresh
    machine (the two stores of `make conformance`) would otherwise both build it in the same folder."""
    import fcntl

    if (venv / "bin" / "robot").exists():
        return
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / "bin" / "robot").exists():
            return
        if stream is not None:
            print(f"[etsi] creating {venv} with the suite's requirements (first run only)", file=stream, flush=True)
        python = os.environ.get("ETSI_PYTHON", "python3")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r",
                        str(conformance / "etsi-suite" / "requirements.txt")], check=True)


def run_suite(run: SuiteRun, stream: TextIO | None = sys.stderr, prefix: str = "",
              on_start: Callable[[subprocess.Popen[str]], None] | None = None) -> RunOutcome:
    """Run the suite; the runner's console lines go to `stream` (None: silent) with `prefix`.

    `on_start` receives the runner's process, for a caller that must be able to stop it from
    another thread (`end_session`)."""
    run.outdir.mkdir(parents=True, exist_ok=True)
    ensure_venv(run.resolved_venv, run.conformance, stream)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metropole-etsi-") as tmp:
        suite = private_suite(run.conformance, Path(tmp))
        proc = subprocess.Popen(run.command(), env=run.environment(suite), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        closing = ""
        if on_start is not None:
            on_start(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("ETSI: "):
                    closing = line.strip()
                if stream is not None:
                    stream.write(prefix + line)
                    stream.flush()
            proc.wait()
        finally:
            end_session(proc)
    return RunOutcome(proc.returncode, time.monotonic() - start, run.outdir, closing)


def private_suite(conformance: Path, into: Path) -> Path:
    """A writable copy of etsi-suite/ for one run (22 MB, a second or two).

    The runner lays its offline fixture overlay into the suite folder, one per @context
    address, when it can write there (as root it always can): pointed at the shared
    folder, every run on a new free port would leave 2.6 MB there, and two runs on the
    same port would build it at the same time. A copy per run keeps ../shared untouched
    and runs apart."""
    suite = into / "etsi-suite"
    shutil.copytree(conformance / "etsi-suite", suite, ignore=shutil.ignore_patterns(".offline"),
                    copy_function=shutil.copyfile)
    for folder, _dirs, _files in os.walk(suite):
        os.chmod(folder, 0o755)  # copytree copied the read-only modes of the shared folders
    return suite


def selection_args(tests: Sequence[str] = (), paths: Sequence[str] = (), include: Sequence[str] = (),
                   exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """Robot arguments selecting tests by id pattern (`018_01_01` or `018_01*`), tag, and suite paths."""
    args: list[str] = []
    for t in tests:
        args += ["--test", t if any(ch in t for ch in "*? ") else f"{t}*"]
    for tag in include:
        args += ["--include", tag]
    for tag in exclude:
        args += ["--exclude", tag]
    return (*args, *paths)
