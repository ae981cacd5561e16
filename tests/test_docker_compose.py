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


def instructions(stage: str) -> list[tuple[str, str]]:
    """A stage's (KEYWORD, arguments), continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in stage.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split()[0].upper(), line.partition(" ")[2]) for line in joined.splitlines() if line.strip()]


def parents() -> dict[str, str]:
    """Each named stage's FROM image."""
    return dict((name, image) for image, name in re.findall(r"^FROM (\S+) AS (\w+)$", DOCKERFILE.read_text(), flags=re.M))


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


def test_agents_reach_redis_through_the_service_as_their_acl_users(compose):
    env = env_example()
    for name in ("producer", "consumer"):
        service = compose["services"][name]
        url = service["environment"]["EDGEPRUNE_REDIS"]
        assert url == f"redis://{name}:{env[name.upper() + '_PASSWORD']}@redis:6379/0"
        assert service["environment"]["EDGEPRUNE_QUEUE_SECRET"] == env["QUEUE_SECRET"]
        assert f"--prefix {env['QUEUE_PREFIX']}" in service["command"]
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


METADATA = {"ARG", "ENV", "WORKDIR", "ENTRYPOINT", "USER", "VOLUME", "CMD"}


def test_the_agent_stage_has_one_big_step_after_every_copy():
    """vfs copies the whole tree for every filesystem step: one RUN, the COPYs before it, metadata after."""
    steps = instructions(stages(DOCKERFILE)["agent"])
    keywords = [keyword for keyword, _ in steps]
    assert keywords.count("RUN") == 1
    run = keywords.index("RUN")
    assert {k for k in keywords[:run] if k not in METADATA} == {"COPY"}
    assert set(keywords[run + 1:]) <= METADATA - {"ARG"}
    script = steps[run][1]
    # python3, its venv, torch, edgeprune, the non-root user and the optional Intel runtime at once.
    for part in ("apt-get install", "python3-venv", "$INTEL_GPU", "intel-opencl-icd", "python3 -m venv",
                 '"torch==${TORCH_VERSION}"', "pip install $wheels $rest_from /src", "useradd", "chown edgeprune"):
        assert part in script, part


@pytest.mark.parametrize("target", ["producer", "consumer"])
def test_agent_targets_add_metadata_only_to_the_shared_stage(target):
    assert parents()[target] == "agent"
    assert {keyword for keyword, _ in instructions(stages(DOCKERFILE)[target])} <= {"USER", "VOLUME", "CMD"}


def test_wheels_are_served_to_the_build_never_copied_or_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/wheels/torch-2.13.0+cpu-cp311.whl"],
                             cwd=REPO).returncode
    kept = subprocess.run(["git", "check-ignore", "-q", "docker/wheels/README.md"], cwd=REPO).returncode
    assert (ignored, kept) == (0, 1)
    dockerignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ".git" in dockerignore and "docker/wheels" in dockerignore
    text = DOCKERFILE.read_text()
    assert "wheels" not in " ".join(args for keyword, args in instructions(text) if keyword == "COPY")
    assert "${WHEELS_URL:+--find-links $WHEELS_URL}" in text
    script = SMOKE.read_text()
    assert "python3 -m http.server" in script and "--bind 127.0.0.1" in script
    assert '--build-arg WHEELS_URL="$WHEELS_URL" --build-arg WHEELS_ONLY=1' in script


def test_the_smoke_builds_the_images_the_local_override_runs(compose):
    local = load(LOCAL)["services"]
    script = SMOKE.read_text()
    assert '-t "edgeprune-$target:local"' in script and "for target in consumer producer" in script
    assert "-t edgeprune-redis:local" in script
    for service in ("producer", "consumer", "redis"):
        assert local[service]["image"] == f"edgeprune-{service}:local"
    # Equal build arguments for both agents (base aside) let one build serve both targets.
    producer, consumer = (dict(compose["services"][s]["build"]["args"]) for s in ("producer", "consumer"))
    consumer.pop("INTEL_GPU")
    assert set(producer) == set(consumer) and producer.pop("BASE_IMAGE") and consumer.pop("BASE_IMAGE")
    assert producer == consumer


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
        assert url == f"redis://{name}:{env[name.upper() + '_PASSWORD']}@127.0.0.1:{port}/0"
    assert smoke_env()["REDIS_PORT"] != "6379", "the host's own Redis holds 6379"


def test_smoke_environment_sets_only_documented_variables_and_a_valid_sweep():
    env = smoke_env()
    assert set(env) <= set(env_example())
    assert env["DATA_FILE"] == "cifar-10-binary-mini.tar.gz"
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
    """What local-smoke.sh runs: the published file less `name:` and Redis's ports, plus the loopback override."""
    assert "sed -e '/^name:/d' -e '/^    ports:$/,/^      - /d'" in SMOKE.read_text()
    copy = re.sub(r"^name:.*\n", "", COMPOSE.read_text(), flags=re.M)
    copy = re.sub(r"^    ports:\n      - .*\n", "", copy, flags=re.M)
    (tmp_path / "docker-compose.yml").write_text(copy)
    (tmp_path / "smoke.env").write_text("".join(f"{k}={v}\n" for k, v in smoke_env().items()))
    done = subprocess.run(["docker-compose", "--project-directory", str(DOCKER), "--env-file",
                           str(tmp_path / "smoke.env"), "-f", str(tmp_path / "docker-compose.yml"),
                           "-f", str(LOCAL), "config"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(done.stdout)
    assert {s["network_mode"] for s in merged["services"].values()} == {"host"}
    # Host networking admits no port bindings (docker-py refuses them at `up`, not at `config`).
    assert not any("ports" in s for s in merged["services"].values())
