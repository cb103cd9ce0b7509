"""The image, tested without a Docker engine: what it holds, installed as it installs it, every command it runs.

1. The build context is the project filtered by `.dockerignore` (Docker's
   rules, tests/compose/image.py); each COPY of the Dockerfile takes its
   files from there into a folder standing for the image's file system.
2. The build stage's RUN commands (`python -m venv`, then the Dockerfile's own
   `pip install --no-cache-dir -c constraints.txt .`) run in that folder, the
   venv's path mapped to it. (The runtime stage's `useradd` is left out: it
   changes the machine's users.)
3. Every command the compose files give the `metropole` image, and the
   image's own CMD, runs from that venv alone, with the environment the
   compose file sets (service host names mapped to a PostgreSQL schema of the
   test, a Mosquitto of its own and free ports), and must start and answer
   its health check (the image's HEALTHCHECK command) and `/ready`.
4. The operator steps of the README's compose section (provision, publish,
   read back) run with curl and mosquitto_pub against those processes.

The install needs PyPI (as `docker build` does): about a minute.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.compose.conftest import PROJECT, environment_of, interpolate, stack
from tests.compose.image import Image, assemble, build_context, read_image
from tests.pg import drop_schema, schema_name
from tests.web.conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SECRETS = {"POSTGRES_PASSWORD": "image-test-pw", "METROPOLE_DB_PASSWORD": "image-test-pw",
           "QUANTUMLEAP_DB_PASSWORD": "image-test-pw"}


@dataclass
class Installed:
    image: Image
    root: Path  # stands for the image's /

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    @property
    def bin(self) -> Path:
        return self.path(self.image.venv) / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    image = read_image()
    root = tmp_path_factory.mktemp("image-root")
    assemble(image, build_context(), PROJECT, root)
    build_stage = next(stage for stage, _, run in image.runs if "python -m venv" in run)
    shims = tmp_path_factory.mktemp("shims")
    (shims / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {"PATH": f"{shims}:{os.environ['PATH']}", "HOME": str(root), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for stage, workdir, run in image.runs:
        if stage != build_stage:
            continue
        command = run.replace(image.venv, str(root / image.venv.lstrip("/")))
        cwd = root / workdir.lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        if done.returncode != 0:
            reason = f"RUN {run} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            if "Could not find a version" in done.stderr or "NewConnectionError" in done.stderr:
                if services.in_ci():
                    pytest.fail(reason, pytrace=False)
                pytest.skip("PyPI is not reachable: " + reason[-300:])
            pytest.fail(reason, pytrace=False)
    return Installed(image, root)


def test_the_venv_holds_everything_the_code_imports(installed: Installed) -> None:
    check = subprocess.run([str(installed.bin / "pip"), "check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
    import tomllib

    found = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in found]  # what pip installs, hence what the image holds
    code = "import importlib, pkgutil, sys\n" + "".join(
        f"import {p}\nfor m in pkgutil.walk_packages({p}.__path__, '{p}.'):\n"
        f"    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
        for p in packages)
    imported = subprocess.run([str(installed.bin / "python"), "-c", code], cwd=installed.root, capture_output=True,
                              text=True, check=False, env={"PATH": str(installed.bin)})
    assert imported.returncode == 0, imported.stderr[-3000:]
    source = subprocess.run([str(installed.bin / "python"), "-c", "import broker, web; print(broker.__file__, web.__file__)"],
                            cwd="/", capture_output=True, text=True, check=False)
    assert str(PROJECT) not in source.stdout, "the venv must not import from the checkout"


def test_nothing_secret_or_local_is_in_the_image(installed: Installed) -> None:
    files = [p.relative_to(installed.root).as_posix() for p in installed.root.rglob("*") if p.is_file()]
    # runtime data is the build context's ./data/ (or the image's /data); a package's own data/ folder
    # (indicators/data/: threshold tables and town outlines) is code
    assert not [f for f in files if re.search(r"(^|/)\.env$|\.env$|^(src/)?data/|\.db$|(^|/)tests/", f)
                and "site-packages" not in f]
    assert installed.path("/opt/metropole/healthcheck.py").exists()


# -- running what the compose files run -------------------------------------------------------

@dataclass
class Stack:
    installed: Installed
    work: Path
    mqtt_port: int
    pg_schemas: list[str] = field(default_factory=list)
    procs: list[tuple[str, subprocess.Popen[str], Path]] = field(default_factory=list)

    def map_env(self, env: dict[str, str], ports: dict[str, int], data: Path) -> dict[str, str]:
        """A compose service's environment made local: hosts, ports, data folders, the store URLs."""
        out = {}
        for name, value in env.items():
            value = re.sub(r"postgresql://[^@]+@(postgres|timescale):5432/\w+(\?schema=(\w+))?",
                           lambda m: self.schema_url(m.group(3)), value)
            for host in ("broker", "orion"):
                if f"http://{host}:1026" in value:
                    value = value.replace(f"http://{host}:1026", f"http://127.0.0.1:{ports['1026']}")
            value = re.sub(r"http://127\.0\.0\.1:(1026|4041|7896|8668)",
                           lambda m: f"http://127.0.0.1:{ports[m.group(1)]}", value)
            if name.endswith(("_PORT", "PORT")) and value in ports:
                value = str(ports[value])
            value = {"0.0.0.0": "127.0.0.1", "mosquitto": "127.0.0.1", "/data": str(data)}.get(value, value)
            if name == "METROPOLE_AGENT_MQTT_PORT":
                value = str(self.mqtt_port)
            if name == "METROPOLE_AGENT_MQTT_CLIENT_ID":
                value = f"{value}-{uuid.uuid4().hex[:8]}"
            out[name] = value
        return out

    def schema_url(self, schema: str | None) -> str:
        name = schema_name("image") + (f"_{schema}" if schema else "")
        self.pg_schemas.append(name)
        return f"{services.POSTGRES_DSN}?schema={name}"

    def start(self, name: str, args: list[str], env: dict[str, str], data: Path) -> subprocess.Popen[str]:
        image = self.installed.image
        base = {k: v.replace("{PATH}", os.environ["PATH"]).replace(image.venv, str(self.installed.path(image.venv)))
                for k, v in image.env.items()}
        base = self.map_env(base, {}, data)
        log = self.work / f"{name}.log"
        proc = subprocess.Popen([*image.entrypoint, *args], cwd=data, env={**base, "HOME": str(data), **env},
                                stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
        self.procs.append((name, proc, log))
        return proc

    def healthy(self, name: str, proc: subprocess.Popen[str], env: dict[str, str], data: Path) -> None:
        """The image's HEALTHCHECK command passes (retried as Docker would, within a deadline)."""
        command = [c.replace("/opt/metropole", str(self.installed.path("/opt/metropole"))) for c in
                   self.installed.image.healthcheck]
        command[0] = str(self.installed.bin / command[0])
        deadline = time.monotonic() + 60
        while True:
            log = (self.work / f"{name}.log").read_text()
            if proc.poll() is not None and "is already in use" in log:
                raise PortTaken(log[-500:])
            assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{log[-3000:]}"
            check = subprocess.run(command, env={"PATH": str(self.installed.bin), **env}, capture_output=True,
                                   text=True, check=False, timeout=30)
            if check.returncode == 0:
                return
            assert time.monotonic() < deadline, f"{name} never became healthy: {check.stderr}\n{log[-3000:]}"
            time.sleep(0.5)


class PortTaken(Exception):
    """A port free_port() handed out was taken before the command bound it (another process of this machine):
    the command said so in one line and stopped, as it must; the test starts it again on other ports."""


@pytest.fixture(scope="module")
def stack_run(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    services.require_postgres()
    if not Path(MOSQUITTO).exists():
        if services.in_ci():
            pytest.fail("the mosquitto binary is required under CI=true", pytrace=False)
        pytest.skip("the mosquitto binary (Debian's mosquitto package) is not installed")
    work = tmp_path_factory.mktemp("image-run")
    mqtt_port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {getpass.getuser()}\n")
    mosquitto = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = Stack(installed, work, mqtt_port)
    try:
        yield run
    finally:
        for _, proc, _ in run.procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in run.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        mosquitto.terminate()
        mosquitto.wait(timeout=10)
        for schema in run.pg_schemas:
            drop_schema(schema)


def _service_args(command: list[str], ports: dict[str, int], data: Path) -> list[str]:
    mapped = {"0.0.0.0": "127.0.0.1", "/data": str(data), **{k: str(v) for k, v in ports.items()}}
    return [mapped.get(a, a) for a in command]


def _own_image_services() -> list[tuple[str, str, dict[str, object]]]:
    found = []
    for name in ("embedded", "fiware"):
        for service, spec in stack(name)["services"].items():
            if str(spec.get("image", "")).startswith("metropole:"):
                found.append((name, service, spec))
    return found


def test_every_command_the_compose_files_and_the_image_run_starts_and_answers(stack_run: Stack) -> None:
    """Broker first (the agents of both stacks deliver to it: Orion-LD's stand-in), then each agents service, then CMD."""
    specs = sorted(_own_image_services(), key=lambda s: 0 if s[1] == "broker" else 1)
    assert {(s, n) for s, n, _ in specs} == {("embedded", "broker"), ("embedded", "agents"), ("fiware", "agents")}
    broker_port = free_port()
    started: dict[str, tuple[int, dict[str, int]]] = {}
    for stack_name, service, spec in specs:
        ports = {"1026": broker_port if service == "broker" else started["broker"][0], "4041": free_port(),
                 "7896": free_port(), "8668": free_port()}
        data = stack_run.work / f"{stack_name}-{service}"
        data.mkdir()
        env = environment_of(spec)
        env = {k: interpolate(v, SECRETS) for k, v in env.items()}
        env = stack_run.map_env(env, ports, data)
        raw_command: list[object] = list(spec["command"])  # type: ignore[call-overload]
        command = [str(c) for c in raw_command]
        proc = stack_run.start(f"{stack_name}-{service}", _service_args(command, ports, data), env, data)
        stack_run.healthy(f"{stack_name}-{service}", proc, env, data)
        assert env["METROPOLE_HEALTHCHECK_URL"].endswith("/ready"), "compose health checks ask readiness"
        assert httpx.get(env["METROPOLE_HEALTHCHECK_URL"].replace("/ready", "/health"), timeout=10).status_code == 200
        started.setdefault(service, (ports["4041"] if service == "agents" else broker_port, ports))
    # the image's own CMD (`metropole run`), on free ports through its variables
    for attempt in range(3):
        data = stack_run.work / f"image-cmd-{attempt}"
        data.mkdir()
        ports = {"1026": free_port(), "4041": free_port(), "7896": free_port(), "8668": free_port()}
        env = {"METROPOLE_BROKER_PORT": str(ports["1026"]), "METROPOLE_HISTORY_PORT": str(ports["8668"]),
               "METROPOLE_AGENT_PROVISIONING_PORT": str(ports["4041"]), "METROPOLE_AGENT_HTTP_PORT": str(ports["7896"]),
               "METROPOLE_AGENT_MQTT_PORT": str(stack_run.mqtt_port), "METROPOLE_AGENT_MQTT": "external",
               "METROPOLE_AGENT_MQTT_CLIENT_ID": f"image-cmd-{uuid.uuid4().hex[:6]}",
               "METROPOLE_HEALTHCHECK_URL": f"http://127.0.0.1:{ports['1026']}/ready"}
        proc = stack_run.start(f"image-cmd-{attempt}", _service_args(stack_run.installed.image.cmd, ports, data),
                               env, data)
        try:
            stack_run.healthy(f"image-cmd-{attempt}", proc, env, data)
            break
        except PortTaken:
            if attempt == 2:
                raise
    for port, path in ((ports["8668"], "/v2"), (ports["4041"], "/ready"), (ports["7896"], "/ready")):
        assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code == 200, (port, path)
    stack_run.ports = started  # type: ignore[attr-defined]


def _operator_block() -> str:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    return next(b for b in blocks if "docker compose exec mosquitto mosquitto_pub" in b)


def test_the_readme_operator_steps_work_against_the_image(stack_run: Stack) -> None:
    started = getattr(stack_run, "ports", None)
    if started is None:
        pytest.fail("the commands did not start (see the test before)", pytrace=False)
    broker_port, agents = started["broker"][0], started["agents"][1]
    block = _operator_block()
    block = (block.replace("localhost:4041", f"127.0.0.1:{agents['4041']}")
             .replace("localhost:1026", f"127.0.0.1:{broker_port}")
             .replace("localhost:8668", f"127.0.0.1:{broker_port}")  # the embedded broker serves /v2 on its port
             .replace("docker compose exec mosquitto mosquitto_pub",
                      f"mosquitto_pub -h 127.0.0.1 -p {stack_run.mqtt_port}"))
    lines = block.strip().split("\n")
    publish = next(i for i, line in enumerate(lines) if line.startswith("mosquitto_pub"))
    setup, reads = "\n".join(lines[:publish + 1]), lines[publish + 1:]
    done = subprocess.run(["bash", "-euc", setup], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stdout.lower(), done.stdout
    for read in reads:
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(["bash", "-euc", read], capture_output=True, text=True, timeout=30, check=False).stdout
            if "41" in out and "rror" not in out:
                break
            assert time.monotonic() < deadline, f"{read}\n-> {out}"
            time.sleep(0.5)
