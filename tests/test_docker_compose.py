"""docker/: compose files and Dockerfiles checked as far as a machine without Docker can.

Parses the YAML, resolves ${VAR:-default} against .env.example, and checks services, volumes,
environment, build files and that every command is a real edgeprune command with real flags.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from edgeprune.cli import COMMANDS, cli

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
OVERRIDES = [DOCKER / "docker-compose.gpu.yml", DOCKER / "docker-compose.intel-gpu.yml"]
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} substitution ($$ is a literal $)."""
    return VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text).replace("$$", "$")


def load(path: Path) -> dict:
    return yaml.safe_load(interpolate(path.read_text(), env_example()))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE)


def test_every_variable_is_documented_in_env_example_and_used():
    documented = set(env_example())
    texts = [p.read_text() for p in [COMPOSE, *OVERRIDES]]
    used = {m.group(1) for text in texts for m in VARIABLE.finditer(text)}
    assert used - documented == set(), "variables missing from .env.example"
    assert documented - used == set(), ".env.example documents variables nothing uses"


def test_redis_persists_with_aof_on_a_declared_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "--requirepass" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "healthcheck" in redis


def test_named_volumes_are_declared_and_used(compose):
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared


def test_agents_reach_redis_through_the_service_with_the_password(compose):
    env = env_example()
    for name in ("producer", "consumer"):
        service = compose["services"][name]
        url = service["environment"]["EDGEPRUNE_REDIS"]
        assert url == f"redis://:{env['REDIS_PASSWORD']}@redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["EDGEPRUNE_SHARED"] == "/shared"
        assert any(v.endswith(":/shared:ro") for v in service["volumes"])


def test_producer_is_scalable(compose):
    producer = compose["services"]["producer"]
    # A fixed name or host port would make `--scale producer=4` fail.
    assert "container_name" not in producer and "ports" not in producer


def test_consumer_stops_gracefully(compose):
    consumer = compose["services"]["consumer"]
    assert consumer["stop_signal"] == "SIGTERM"
    minutes = int(consumer["stop_grace_period"].rstrip("m"))
    assert minutes >= 1


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_build_files_exist_and_copy_real_folders(compose, service):
    build = compose["services"][service]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    declared_args = set(re.findall(r"^ARG (\w+)", text, flags=re.M))
    assert set(build.get("args", {})) <= declared_args
    for source in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
        for part in source.split():
            assert (context / part).exists(), f"{dockerfile.name} copies missing {part}"
    assert 'ENTRYPOINT ["edgeprune"]' in text


def test_producer_base_image_is_a_build_arg_and_torch_matches_the_pin():
    pin = re.search(r'"torch==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    for name in ("Dockerfile.producer", "Dockerfile.consumer"):
        text = (DOCKER / name).read_text()
        assert re.search(r"^ARG TORCH_VERSION=(.+)$", text, flags=re.M).group(1) == pin
    producer = (DOCKER / "Dockerfile.producer").read_text()
    assert producer.index("ARG BASE_IMAGE") < producer.index("FROM ${BASE_IMAGE}")


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_commands_are_real_edgeprune_commands(compose, service):
    argv = shlex.split(compose["services"][service]["command"])
    assert argv[0] == service and argv[0] in COMMANDS
    command = cli.get_command(click.Context(cli), argv[0])
    flags = {opt for param in command.params for opt in param.opts}
    given = [a.split("=")[0] for a in argv[1:] if a.startswith("--")]
    assert given and set(given) <= flags
    # The command line parses: values fit their options' types.
    ctx = command.make_context(service, argv[1:], resilient_parsing=False)
    assert ctx.params


def test_override_files_extend_existing_services(compose):
    for path in OVERRIDES:
        override = load(path)
        assert set(override["services"]) <= set(compose["services"])
    gpu = load(OVERRIDES[0])["services"]["producer"]["deploy"]["resources"]["reservations"]
    assert gpu["devices"][0]["driver"] == "nvidia"
    assert "/dev/dri:/dev/dri" in load(OVERRIDES[1])["services"]["consumer"]["devices"]
