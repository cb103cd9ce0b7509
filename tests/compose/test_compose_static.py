"""Static checks of the compose stacks that run without Docker.

Each compose file is validated against the Compose specification's JSON
Schema (the copy `check-jsonschema` ships, draft 2020-12), as written and
after interpolation; every image is pinned; every variable, published port and
volume appears in compose/README.md; secrets have no default; every METROPOLE_*
variable a stack sets is one the code reads.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.compose.conftest import (
    COMPOSE,
    COMPOSE_README,
    OWN_IMAGE,
    PROJECT,
    STACKS,
    MissingVariable,
    environment_of,
    interpolate,
    load_yaml,
    references,
    services,
    stack,
    stack_text,
)

SECRET = re.compile(r"PASSWORD|PASS$|SECRET|TOKEN|_KEY$")
#: Values every required variable gets when a file is interpolated for validation.
FAKE_SECRETS = {"POSTGRES_PASSWORD": "x", "QUANTUMLEAP_DB_PASSWORD": "y", "METROPOLE_DB_PASSWORD": "z"}
#: Services holding state, and the container path their named volume must cover.
STORES = {
    "fiware": {"mongo": "/data/db", "timescale": "/home/postgres/pgdata", "redis": "/data",
               "mosquitto": "/mosquitto/data", "agents": "/data"},
    "embedded": {"postgres": "/var/lib/postgresql/data", "broker": "/data",
                 "mosquitto": "/mosquitto/data", "agents": "/data"},
}


def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema, as vendored by check-jsonschema."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))


def readme_tables() -> dict[str, list[list[str]]]:
    """compose/README.md's tables under each `## heading`, rows as cells (backticks removed)."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in COMPOSE_README.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            cells = [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]
            tables.setdefault(heading, []).append(cells)
    return tables


def first_column(heading: str) -> set[str]:
    return {row[0] for row in readme_tables().get(heading, [])[0:]}


# ---- the Compose specification ----

def test_the_compose_schema_is_the_compose_specification() -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_compose_file_as_written_matches_the_compose_specification(stack_name: str) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(stack(stack_name)), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_file_as_interpolated_matches_the_compose_specification(stack_name: str) -> None:
    text = interpolate(stack_text(stack_name), FAKE_SECRETS)
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = list(validator.iter_errors(load_yaml(text)))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_stack_refuses_to_start_without_its_secrets(stack_name: str) -> None:
    with pytest.raises(MissingVariable):
        interpolate(stack_text(stack_name), {})


# ---- images ----

def test_every_image_is_pinned(stack_name: str) -> None:
    for name, service in services(stack_name):
        image = interpolate(service.get("image", ""), {})
        assert image, f"{stack_name}/{name} has no image"
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        assert tag and tag != "latest", f"{stack_name}/{name}: image {image} is not pinned to a version"
        assert re.search(r"\d", tag), f"{stack_name}/{name}: tag {tag} of {image} names no version"
        if "build" in service:
            assert repository == OWN_IMAGE, f"{stack_name}/{name} builds an image named {repository}"
        else:
            assert repository != OWN_IMAGE, f"{stack_name}/{name} uses {OWN_IMAGE} without building it"


def test_every_image_is_listed_with_its_version_in_the_readme(stack_name: str) -> None:
    rows = {row[0].split(" ")[0]: row[2] for row in readme_tables()["Images"][1:]}
    for name, service in services(stack_name):
        repository, _, tag = interpolate(service["image"], {}).rpartition(":")
        assert repository in rows, f"{stack_name}/{name}: image {repository} missing from compose/README.md, Images"
        assert rows[repository].startswith(tag), f"{repository}: README says {rows[repository]}, compose file {tag}"


# ---- variables ----

def test_every_variable_a_stack_reads_is_documented(stack_name: str) -> None:
    documented = first_column("Environment variables")
    missing = sorted({r.name for r in references(stack_text(stack_name))} - documented)
    assert not missing, f"{stack_name}: variables missing from compose/README.md: {missing}"


def test_every_variable_set_in_a_container_is_documented(stack_name: str) -> None:
    documented = first_column("Environment variables")
    for name, service in services(stack_name):
        missing = sorted(set(environment_of(service)) - documented)
        assert not missing, f"{stack_name}/{name}: container variables missing from compose/README.md: {missing}"


def test_every_variable_of_the_init_scripts_is_documented() -> None:
    documented = first_column("Environment variables")
    script = (COMPOSE / "fiware" / "subscribe-quantumleap.sh").read_text(encoding="utf-8")
    read = set(re.findall(r"^([A-Z][A-Z0-9_]+)=\$\{\1:-", script, flags=re.MULTILINE))
    assert read, "the subscription script reads no variable?"
    assert not sorted(read - documented)


def test_no_secret_has_a_default(stack_name: str) -> None:
    for ref in references(stack_text(stack_name)):
        if SECRET.search(ref.name):
            assert ref.op in {":?", "?"}, f"{stack_name}: ${{{ref.name}}} must be required (:?), not {ref.op or 'bare'}"
    for name, service in services(stack_name):
        for var, value in environment_of(service).items():
            if SECRET.search(var):
                assert "${" in value, f"{stack_name}/{name}: {var} has a literal value in the compose file"


def test_secrets_are_never_in_the_repository() -> None:
    for path in COMPOSE.rglob("*"):
        assert not (path.name == ".env" or path.suffix == ".env" or path.name == "passwd"), f"{path} holds secrets"
    ignored = (COMPOSE / ".gitignore").read_text(encoding="utf-8")
    assert "*/.env" in ignored and "mosquitto/passwd" in ignored


def _code_text() -> str:
    parts = [p.read_text(encoding="utf-8") for pkg in ("agents", "broker", "metropole", "adapters")
             for p in (PROJECT / pkg).rglob("*.py")]
    parts.append((COMPOSE / "healthcheck.py").read_text(encoding="utf-8"))
    return "\n".join(parts)


def test_every_metropole_variable_a_stack_sets_is_read_by_the_code(stack_name: str) -> None:
    code = _code_text()
    for name, service in services(stack_name):
        if "build" not in service:
            continue  # other images' variables (METROPOLE_DB_PASSWORD of timescale-init) are theirs
        for var in environment_of(service):
            if var.startswith("METROPOLE_"):
                # agents/runtime.py reads METROPOLE_AGENT_<NAME> as _env("<NAME>", ...)
                suffix = var.removeprefix("METROPOLE_AGENT_")
                read = f'"{var}"' in code or (suffix != var and f'_env("{suffix}"' in code)
                assert read, f"{stack_name}/{name}: {var} is read by no module of ours"


def test_every_command_of_our_image_is_a_metropole_subcommand(stack_name: str) -> None:
    from metropole.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    known = set(subparsers.choices)  # type: ignore[arg-type]
    for name, service in services(stack_name):
        if service["image"].startswith(OWN_IMAGE + ":"):
            command = service["command"][0]
            assert command in known, f"{stack_name}/{name}: `metropole {command}` does not exist"


# ---- ports ----

def _published(service: dict[str, Any]) -> list[int]:
    ports = []
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        ports.append(int(str(target).split("/")[0]))
    return ports


def test_every_published_port_is_documented(stack_name: str) -> None:
    rows = readme_tables()["Ports"][1:]
    for name, service in services(stack_name):
        for port in _published(service):
            assert any(row[0] == str(port) and name in row[2] and row[1] in {"both", stack_name} for row in rows), \
                f"{stack_name}/{name}: port {port} missing from compose/README.md, Ports"


def test_every_published_port_binds_host_address(stack_name: str) -> None:
    for name, service in services(stack_name):
        for entry in service.get("ports", []):
            assert str(entry).startswith("${HOST_ADDRESS:-127.0.0.1}:"), \
                f"{stack_name}/{name}: {entry} is not published on HOST_ADDRESS (default 127.0.0.1)"


def test_every_documented_port_is_published() -> None:
    published = {(stack_name, port) for stack_name in STACKS for _, s in services(stack_name) for port in _published(s)}
    for row in readme_tables()["Ports"][1:]:
        stacks = list(STACKS) if row[1] == "both" else [row[1]]
        for stack_name in stacks:
            assert (stack_name, int(row[0])) in published, f"README port {row[0]} is not published by {stack_name}"


# ---- volumes ----

def test_every_store_is_a_named_volume(stack_name: str) -> None:
    data = stack(stack_name)
    declared = set(data.get("volumes") or {})
    for name, path in STORES[stack_name].items():
        mounts = [str(v) for v in data["services"][name].get("volumes", [])]
        named = [m for m in mounts if m.split(":")[0] in declared and m.split(":")[1] == path]
        assert named, f"{stack_name}/{name}: {path} is not on a named volume"
    for name, service in services(stack_name):
        for mount in service.get("volumes", []):
            source = str(mount).split(":")[0]
            assert source in declared or str(mount).endswith(":ro"), \
                f"{stack_name}/{name}: {mount} is neither a named volume nor a read-only configuration mount"


def test_every_volume_is_documented(stack_name: str) -> None:
    rows = {row[0]: row for row in readme_tables()["Volumes"][1:]}
    for volume in stack(stack_name).get("volumes") or {}:
        assert volume in rows and rows[volume][1] in {"both", stack_name}, \
            f"{stack_name}: volume {volume} missing from compose/README.md, Volumes"


def test_every_read_only_mount_exists(stack_name: str) -> None:
    base = STACKS[stack_name].parent
    for name, service in services(stack_name):
        for mount in service.get("volumes", []):
            source = str(mount).split(":")[0]
            if source.startswith("."):
                assert (base / source).exists(), f"{stack_name}/{name}: {source} does not exist"


# ---- start-up order ----

def test_every_service_with_state_or_an_api_has_a_health_check(stack_name: str) -> None:
    for name, service in services(stack_name):
        if name == "subscribe-quantumleap":
            continue
        builds_own = "build" in service  # the Dockerfile's HEALTHCHECK covers our image
        assert builds_own or "healthcheck" in service, f"{stack_name}/{name} has no health check"


def test_dependencies_wait_for_health_not_just_start(stack_name: str) -> None:
    for name, service in services(stack_name):
        for dependency, condition in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dependency == "subscribe-quantumleap" else "service_healthy"
            assert condition["condition"] == expected, f"{stack_name}/{name} -> {dependency}: {condition}"


def test_fiware_agents_start_after_the_history_subscription() -> None:
    data = stack("fiware")["services"]
    assert data["agents"]["depends_on"]["subscribe-quantumleap"]["condition"] == "service_completed_successfully"
    assert set(data["subscribe-quantumleap"]["depends_on"]) == {"orion", "quantumleap"}
    assert data["agents"]["environment"]["METROPOLE_AGENT_BROKER_URL"] == "http://orion:1026"


# ---- the README's operator section ----

def _operator_section() -> str:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Operating the platform with docker compose")
    end = text.find("\n## ", start + 3)
    return text[start:] if end == -1 else text[start:end]


def test_the_readme_starts_the_fiware_stack_in_three_commands() -> None:
    section = _operator_section()
    block = section.split("### From nothing to a running FIWARE stack in three commands", 1)[1].split("```sh", 1)[1]
    block = block.split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if not line.startswith((" ", "\t"))]
    assert len(commands) == 3, commands
    assert commands[-1].startswith("docker compose up")
    for secret in ("POSTGRES_PASSWORD", "QUANTUMLEAP_DB_PASSWORD", "METROPOLE_DB_PASSWORD"):
        assert secret in block, f"the three commands do not set {secret}"


def test_the_readme_names_every_service_port_and_the_scaling_and_sizing() -> None:
    section = _operator_section()
    for name, service in services("fiware"):
        assert f"`{name}`" in section, f"the operator section does not name the service {name}"
        for port in _published(service):
            assert str(port) in section, f"the operator section does not name port {port}"
    assert "$share/" in section and "METROPOLE_AGENT_MQTT_SHARE_GROUP" in section
    assert "92 towns" in section and "compose/README.md" in section


def test_the_readme_scaling_override_matches_the_compose_specification() -> None:
    import yaml

    section = _operator_section()
    snippet = section.split("```yaml", 1)[1].split("```", 1)[0]

    class ComposeLoader(yaml.SafeLoader):
        """Compose's merge tags (!reset, !override) read as their plain values."""

    for tag in ("!reset", "!override"):
        ComposeLoader.add_constructor(tag, lambda loader, node: loader.construct_sequence(node)
                                      if isinstance(node, yaml.SequenceNode) else loader.construct_scalar(node))
    override = yaml.load(snippet, Loader=ComposeLoader)
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = list(validator.iter_errors(override))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    base = stack("fiware")["services"]["agents"]
    for name, service in override["services"].items():
        assert service["extends"]["service"] == "agents"
        # each replica's MQTT client id comes from its own volume (agents.instance): none is set, none shared
        assert "METROPOLE_AGENT_MQTT_CLIENT_ID" not in service.get("environment", {}), name
        assert base["environment"]["METROPOLE_AGENT_MQTT_CLIENT_ID"] == "${METROPOLE_AGENT_MQTT_CLIENT_ID:-}"
        assert service["volumes"][0].split(":")[0] in override["volumes"], f"{name} shares the first replica's outbox"
