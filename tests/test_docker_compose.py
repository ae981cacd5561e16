"""docker/: compose files, Dockerfiles and the smoke run's inputs, checked without Docker.

Parses the YAML, resolves ${VAR:-default} against .env.example (and against the environment
docker/local-smoke.sh writes), and checks services, volumes, environment, build files, the
loopback override and that every command is a real edgeprune command with real flags. The real
build and run is docker/local-smoke.sh's (docs/docker.md), by hand on a host with Docker.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from edgeprune.cli import COMMANDS, cli
from pipeline.search.config import load_sweep
from pipeline.search.mapping import check_mapping

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
LOCAL = DOCKER / "docker-compose.local.yml"
OVERRIDES = [DOCKER / "docker-compose.gpu.yml", DOCKER / "docker-compose.intel-gpu.yml", LOCAL]
DOCKERFILE = DOCKER / "Dockerfile"
SMOKE = DOCKER / "local-smoke.sh"
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file; comments and blank lines skipped."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def env_example() -> dict[str, str]:
    return env_lines((DOCKER / ".env.example").read_text())


def smoke_env() -> dict[str, str]:
    """The env file local-smoke.sh writes, with its shell variables at their defaults."""
    script = SMOKE.read_text()
    body = re.search(r'cat >"\$WORK/smoke.env" <<EOF\n(.*?)\nEOF\n', script, flags=re.S).group(1)
    defaults = dict(re.findall(r'^(\w+)=\$\{\1:-([^}]*)\}$', script, flags=re.M))
    defaults.update(re.findall(r"^(PREFIX)=(\S+)$", script, flags=re.M))
    defaults = {k: v.replace("$REPO", str(REPO)) for k, v in defaults.items()}
    values = env_lines(body)
    return {k: re.sub(r"\$(\w+)", lambda m: defaults.get(m.group(1), m.group(0)), v) for k, v in values.items()}


def stages(dockerfile: Path) -> dict[str, str]:
    """Each build stage's name and its instructions (a stage without AS is named by its index)."""
    found: dict[str, str] = {}
    name = ""
    for line in dockerfile.read_text().splitlines():
        start = re.match(r"^FROM \S+(?: AS (\w+))?$", line)
        if start:
            name = start.group(1) or str(len(found))
            found[name] = ""
        elif name:
            found[name] += line + "\n"
    return found


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} substitution ($$ is a literal $)."""
    return VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text).replace("$$", "$")


def load(path: Path, env: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(path.read_text(), env_example() if env is None else env))


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
    assert build["target"] == service and build["target"] in stages(dockerfile)
    declared_args = set(re.findall(r"^ARG (\w+)", text, flags=re.M))
    assert set(build.get("args", {})) <= declared_args
    # Copies from the context, not from another stage (COPY --from=...).
    for source in re.findall(r"^COPY ([^-].*) \S+$", text, flags=re.M):
        for part in source.split():
            assert (context / part).exists(), f"{dockerfile.name} copies missing {part}"
    assert 'ENTRYPOINT ["edgeprune"]' in text


def test_base_image_is_a_build_arg_for_every_image_and_torch_matches_the_pin(compose):
    # The torch build scripts/install.sh installs (pyproject asks only torch>=2.2).
    pin = re.search(r'"torch==([\d.]+)"', (REPO / "scripts" / "install.sh").read_text()).group(1)
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG TORCH_VERSION=(.+)$", text, flags=re.M).group(1) == pin
    assert text.index("ARG BASE_IMAGE") < text.index("FROM ${BASE_IMAGE}")
    redis = (DOCKER / "redis" / "Dockerfile").read_text()
    assert redis.index("ARG BASE_IMAGE") < redis.index("FROM ${BASE_IMAGE}")
    env = env_example()
    for service, variable in (("producer", "PRODUCER_BASE_IMAGE"), ("consumer", "CONSUMER_BASE_IMAGE")):
        assert compose["services"][service]["build"]["args"]["BASE_IMAGE"] == env[variable]


@pytest.mark.parametrize("target", ["producer", "consumer"])
def test_agent_images_run_as_a_user_other_than_root(target):
    users = re.findall(r"^USER (\S+)$", stages(DOCKERFILE)[target], flags=re.M)
    assert users and users[-1] not in ("root", "0")
    redis_users = re.findall(r"^USER (\S+)$", (DOCKER / "redis" / "Dockerfile").read_text(), flags=re.M)
    assert redis_users == ["redis"]


def test_wheels_reach_the_build_context_but_not_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/wheels/torch-2.13.0+cpu-cp311.whl"],
                             cwd=REPO).returncode
    kept = subprocess.run(["git", "check-ignore", "-q", "docker/wheels/README.md"], cwd=REPO).returncode
    assert (ignored, kept) == (0, 1)
    dockerignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ".git" in dockerignore and not any(p.startswith("docker") and "wheels" in p for p in dockerignore)
    assert "COPY docker/wheels/ /wheels/" in DOCKERFILE.read_text()


@pytest.mark.parametrize("env", ["example", "smoke"])
@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_commands_are_real_edgeprune_commands(service, env):
    compose = load(COMPOSE, env_example() if env == "example" else smoke_env())
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


@pytest.fixture(scope="module")
def local() -> dict:
    return load(LOCAL)


def test_local_override_keeps_all_traffic_on_loopback_with_its_own_redis_port(local):
    env = env_example()
    for name, service in local["services"].items():
        assert service["network_mode"] == "host", name
        if "build" in service:
            assert service["build"]["network"] == "host", name
    command = local["services"]["redis"]["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert command[command.index("--appendonly") + 1] == "yes" and "--requirepass" in command
    assert f"-h 127.0.0.1 -p {port} " in local["services"]["redis"]["healthcheck"]["test"][1]
    for name in ("producer", "consumer"):
        url = local["services"][name]["environment"]["EDGEPRUNE_REDIS"]
        assert url == f"redis://:{env['REDIS_PASSWORD']}@127.0.0.1:{port}/0"
    assert smoke_env()["REDIS_PORT"] != "6379", "the host's own Redis holds 6379"


def test_smoke_environment_sets_only_documented_variables_and_a_valid_sweep():
    env = smoke_env()
    assert set(env) <= set(env_example())
    assert env["DATA_FILE"] == "cifar10-jpeg-mini.tar.gz" and env["WHEELS_ONLY"] == "1"
    argv = shlex.split(env["PRODUCER_ARGS"])
    sweep = argv[argv.index("--sweep") + 1]
    assert sweep.startswith("smoke/") and "./smoke:/app/smoke:ro" in load(LOCAL)["services"]["producer"]["volumes"]
    config = load_sweep(DOCKER / sweep)
    schedule = REPO / env["SCHEDULE"]
    check_mapping(config.parameters, schedule)  # raises when a parameter names no pruner of it
    assert argv[argv.index("--prefix") + 1] == shlex.split(env["CONSUMER_ARGS"])[-1]


def test_smoke_script_parses():
    assert subprocess.run(["bash", "-n", str(SMOKE)]).returncode == 0


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose not installed")
def test_docker_compose_1_29_accepts_the_files_the_smoke_run_gives_it(tmp_path):
    """What local-smoke.sh runs: the published file less `name:`, plus the loopback override."""
    (tmp_path / "docker-compose.yml").write_text(re.sub(r"^name:.*\n", "", COMPOSE.read_text(), flags=re.M))
    (tmp_path / "smoke.env").write_text("".join(f"{k}={v}\n" for k, v in smoke_env().items()))
    done = subprocess.run(["docker-compose", "--project-directory", str(DOCKER), "--env-file",
                           str(tmp_path / "smoke.env"), "-f", str(tmp_path / "docker-compose.yml"),
                           "-f", str(LOCAL), "config"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(done.stdout)
    assert {s["network_mode"] for s in merged["services"].values()} == {"host"}
