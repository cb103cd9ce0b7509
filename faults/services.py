"""The parts the fault suite starts, kills and restarts: a PostgreSQL cluster, Mosquitto, our processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _pg_bin() -> Path:
    """METROPOLE_FAULTS_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    if os.environ.get("METROPOLE_FAULTS_PG_BIN"):
        return Path(os.environ["METROPOLE_FAULTS_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what or port} does not answer on 127.0.0.1:{port}") from None
            time.sleep(0.1)


def _as_postgres() -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres:
    """A PostgreSQL cluster of our own: initdb into a temporary folder, one port, trust on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"no initdb in {PG_BIN} (Debian's postgresql package; METROPOLE_FAULTS_PG_BIN)")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run([*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        self.start()

    def start(self) -> None:
        """Start the server; after a kill -9 it may refuse while the old backends still hold shared memory: retry."""
        deadline = time.monotonic() + 60
        while True:
            log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - the server's log for its life
            self.proc = subprocess.Popen([*_as_postgres(), str(PG_BIN / "postgres"), "-D", str(self.data),
                                          "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                                          "-c", f"unix_socket_directories={self.folder}", "-c", "fsync=on",
                                          "-c", "max_connections=60"], stdout=log, stderr=log)
            while self.proc.poll() is None:
                try:
                    wait_port(self.port, 0.5, "PostgreSQL")
                    return
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL does not start again (see postgres.log)")
            time.sleep(0.5)

    def pid(self) -> int:
        """The postmaster's pid (runuser's child when run as root)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill9(self) -> None:
        os.kill(self.pid(), signal.SIGKILL)  # the backends notice their postmaster is gone and leave
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid(), signal.SIGINT)  # fast shutdown
            self.proc.wait(timeout=60)


class Mosquitto:
    """A Mosquitto of our own with persistence: queued QoS 1 messages survive its restart."""

    def __init__(self, folder: Path) -> None:
        import getpass

        self.folder = folder
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\nmax_queued_messages 0\n"
                             f"max_inflight_messages 1000\nuser {getpass.getuser()}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port, 30, "Mosquitto")

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # saves its persistence file
            self.proc.wait(timeout=30)


class Process:
    """One of our processes (`metropole ...` or the receiver), its output in a log file."""

    def __init__(self, name: str, args: list[str], folder: Path, env: dict[str, str], ready_port: int) -> None:
        self.name, self.args, self.folder, self.env, self.ready_port = name, args, folder, env, ready_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.folder / f"{self.name}.log", "ab")  # noqa: SIM115
        project = str(Path(__file__).resolve().parent.parent)  # faults.receiver is not an installed package
        env = {**os.environ, **self.env, "PYTHONPATH": project}
        self.proc = subprocess.Popen([sys.executable, *self.args], stdout=log, stderr=log, env=env, cwd=self.folder)
        wait_port(self.ready_port, 60, self.name)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
