#!/usr/bin/env bash
# The compose deployment built and run for real on this host, with a fault test (docs/docker.md).
#
#   bash docker/local-smoke.sh            # as root; TRIALS=8 by default
#
# Builds Redis, producer and consumer images from a local base, starts Redis + 4 producers + 1
# consumer with docker-compose.local.yml (host networking, traffic on 127.0.0.1 only), runs TRIALS
# trials of the ResNet20 rapid sweep (docker/smoke/rapid_resnet20.yaml) on the mini data, kills
# the consumer container once mid-job, restarts the Redis container once, and ends by reading
# the results back: "N/N results stored, 0 lost, 0 duplicated". Exit 0 only then.
#
# Environment: TRIALS (8), REDIS_PORT (6390; the host's own Redis keeps 6379), SHARED_DIR
# (../shared beside the repository, mounted read-only), BASE_IMAGE (local/debian:bookworm, made
# with debootstrap when missing), DOCKER_HOST (a reachable daemon is used as it is; else a
# private dockerd is started and stopped at the end), SMOKE_TIMEOUT (1800 s for the run),
# SMOKE_MIN_FREE_GB (70: free disk the private daemon's vfs storage needs).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIALS=${TRIALS:-8}
REDIS_PORT=${REDIS_PORT:-6390}
BASE_IMAGE=${BASE_IMAGE:-local/debian:bookworm}
SHARED_DIR=${SHARED_DIR:-$REPO/../shared}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-1800}
PROJECT=edgeprune-smoke
PREFIX=edgeprune-smoke
PRODUCERS=4
# The private daemon's socket, pid file, state and data folders.
PRIVATE=edgeprune-docker
WHEELS=$REPO/docker/wheels
WORK=$(mktemp -d /tmp/edgeprune-smoke.XXXXXX)
started_daemon=0
had_run_docker=0
compose_up=0

log() { printf '[smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() { printf 'Error: %s\n' "$*" >&2; exit 2; }

compose() {
    # Debian's docker-compose 1.29 predates the Compose Spec's top-level `name:`: it reads a copy
    # without it, with paths resolved from docker/ as for the published file.
    docker-compose --project-name "$PROJECT" --project-directory "$REPO/docker" --env-file "$WORK/smoke.env" \
        -f "$WORK/docker-compose.yml" -f "$REPO/docker/docker-compose.local.yml" "$@"
}

container_of() { compose ps -q "$1" | head -n 1; }

cleanup() {
    local rc=$?
    set +e
    if [ "$compose_up" = 1 ]; then
        log "removing the smoke's containers and volumes"
        compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
    fi
    if [ "$started_daemon" = 1 ]; then
        log "stopping the private dockerd"
        kill "$(cat "/run/$PRIVATE.pid")" 2>/dev/null
        for _ in $(seq 60); do [ -e "/run/$PRIVATE.pid" ] || break; sleep 1; done
        # dockerd leaves its view of the host's network namespace mounted in its exec root.
        mountpoint -q "/run/$PRIVATE/netns/default" && umount "/run/$PRIVATE/netns/default"
        rm -rf "/run/$PRIVATE"
        [ "$had_run_docker" = 1 ] || rm -rf /run/docker
    fi
    mountpoint -q "$WORK/rootfs/proc" && umount "$WORK/rootfs/proc"
    mountpoint -q "$WORK/rootfs/sys" && umount "$WORK/rootfs/sys"
    [ "$rc" = 0 ] || { [ -f "$WORK/dockerd.log" ] && tail -n 20 "$WORK/dockerd.log" >&2; }
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_tools() {
    [ "$(id -u)" = 0 ] || fail "run as root: the script may start a private dockerd"
    local tool
    for tool in docker docker-compose python3; do
        command -v "$tool" >/dev/null || fail "$tool not found: apt-get install docker.io docker-compose debootstrap"
    done
    [ -d "$SHARED_DIR/data" ] && [ -d "$SHARED_DIR/models" ] \
        || fail "SHARED_DIR=$SHARED_DIR has no data/ and models/: point SHARED_DIR at the shared folder"
    SHARED_DIR=$(cd "$SHARED_DIR" && pwd)
}

start_daemon() {
    if docker info >/dev/null 2>&1; then
        log "using the Docker daemon at ${DOCKER_HOST:-its default socket}"
        return
    fi
    command -v dockerd >/dev/null || fail "no Docker daemon reachable and no dockerd: apt-get install docker.io"
    # vfs copies the whole file tree for every build step: the two agent images took ~50 GB here.
    local free_gb
    free_gb=$(df --output=avail -BG /var/lib | tail -n 1 | tr -dc 0-9)
    [ "$free_gb" -ge "${SMOKE_MIN_FREE_GB:-70}" ] \
        || fail "only ${free_gb} GB free under /var/lib: the vfs build needs ${SMOKE_MIN_FREE_GB:-70} GB (SMOKE_MIN_FREE_GB)"
    export DOCKER_HOST=unix:///run/$PRIVATE.sock
    [ -e /run/docker ] && had_run_docker=1
    log "starting a private dockerd on $DOCKER_HOST (vfs storage in /var/lib/$PRIVATE)"
    # No bridge, no iptables rules: every container uses the host's network (loopback only).
    dockerd --storage-driver vfs --data-root "/var/lib/$PRIVATE" --exec-root "/run/$PRIVATE" \
        --pidfile "/run/$PRIVATE.pid" --host "$DOCKER_HOST" --bridge none --iptables=false \
        --ip-forward=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
    started_daemon=1
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    fail "the private dockerd did not answer within 60 s (its log follows)"
}

ensure_base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && { log "base image $BASE_IMAGE present"; return; }
    case "$BASE_IMAGE" in
        local/debian:*) ;;
        *) log "pulling $BASE_IMAGE"; docker pull "$BASE_IMAGE"; return ;;
    esac
    command -v debootstrap >/dev/null || fail "debootstrap not found: apt-get install debootstrap"
    local suite=${BASE_IMAGE#local/debian:} mirror started=$SECONDS
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    log "making $BASE_IMAGE with debootstrap ($suite from ${mirror:=http://deb.debian.org/debian})"
    debootstrap --variant=minbase "$suite" "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
    log "base image made in $((SECONDS - started)) s"
}

fill_wheels() {
    # Every dependency as a wheel in the build context, so the build reaches no package index
    # (WHEELS_ONLY=1): the host's CPU torch wheel (PyPI's is the CUDA build), then the rest as
    # the images' own Python resolves it (its markers differ from the host's), at the versions
    # installed and tested on this host.
    local torch_version
    torch_version=$(sed -n 's/^ARG TORCH_VERSION=//p' "$REPO/docker/Dockerfile")
    log "collecting wheels into docker/wheels/ (torch $torch_version from the host)"
    python3 -m pip download --no-deps --dest "$WHEELS" "torch==$torch_version" >"$WORK/wheels.log" 2>&1 \
        || { tail -n 20 "$WORK/wheels.log" >&2; fail "pip download torch failed (log above)"; }
    python3 -m pip list --format=freeze --exclude-editable >"$WORK/constraints.txt"
    python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$REPO/pyproject.toml" >"$WORK/requirements.txt"
    docker build --quiet --network host --target venv --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -t "$PROJECT-venv" - <"$REPO/docker/Dockerfile" >/dev/null
    # The host's CA bundle: package registries are reached as the host reaches them.
    docker run --rm --network host -e PIP_CERT=/run/host-ca.crt \
        -v "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}:/run/host-ca.crt:ro" -v "$WHEELS:/wheels" \
        -v "$WORK/constraints.txt:/run/constraints.txt:ro" -v "$WORK/requirements.txt:/run/requirements.txt:ro" \
        "$PROJECT-venv" /opt/venv/bin/pip download --dest /wheels --find-links /wheels --only-binary=:all: \
        --constraint /run/constraints.txt --requirement /run/requirements.txt "setuptools>=68" wheel \
        >>"$WORK/wheels.log" 2>&1 || { tail -n 20 "$WORK/wheels.log" >&2; fail "pip download failed (log above)"; }
}

write_compose_inputs() {
    sed '/^name:/d' "$REPO/docker/docker-compose.yml" >"$WORK/docker-compose.yml"
    local password
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    # The study (a journal file) and every trial's folder live in the producers' shared runs volume.
    cat >"$WORK/smoke.env" <<EOF
REDIS_PASSWORD=$password
REDIS_PORT=$REDIS_PORT
SHARED_DIR=$SHARED_DIR
DATA_FILE=cifar10-jpeg-mini.tar.gz
SCHEDULE=schedules/resnet20_filter_rank.yaml
MODEL=resnet20_cifar
EPOCHS=0
RESULT_TIMEOUT=900
PRODUCER_ARGS=--loop --sweep smoke/rapid_resnet20.yaml --trials $TRIALS --storage runs/smoke/study.journal --out runs/smoke --prefix $PREFIX --eval-limit 200
BACKEND=openvino
DEVICE=CPU
PRECISION=fp32
VISIBILITY_TIMEOUT=15
MAX_ATTEMPTS=3
CONSUMER_ARGS=--fast --prefix $PREFIX
PRODUCER_BASE_IMAGE=$BASE_IMAGE
CONSUMER_BASE_IMAGE=$BASE_IMAGE
TORCH_INDEX=https://download.pytorch.org/whl/cpu
WHEELS_ONLY=1
INTEL_GPU=0
EOF
}

build_images() {
    local started=$SECONDS
    log "building the images (one at a time)"
    compose build >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "image build failed (log above)"; }
    log "images built in $((SECONDS - started)) s"
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^($PROJECT|edgeprune-redis|${BASE_IMAGE%%:*})" >&2 || true
}

queue_status() {
    # The queue as the consumer container sees it (JSON), or nothing while it is down.
    local consumer
    consumer=$(container_of consumer)
    [ -n "$consumer" ] && docker exec "$consumer" edgeprune queue status --json --prefix "$PREFIX" 2>/dev/null
}

wait_until() {
    # wait_until DESCRIPTION FIELD MINIMUM: poll the queue status until FIELD reaches MINIMUM.
    local what=$1 field=$2 minimum=$3 status deadline=$((SECONDS + SMOKE_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        status=$(queue_status || true)
        if [ -n "$status" ] && python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])[sys.argv[2]] < int(sys.argv[3]))' \
                "$status" "$field" "$minimum"; then
            return
        fi
        sleep 2
    done
    fail "timed out waiting for $what"
}

producer_states() { for c in $(compose ps -q producer); do docker inspect -f "{{.State.$1}}" "$c"; done; }

run_smoke() {
    local started=$SECONDS consumer
    log "starting Redis, $PRODUCERS producers and 1 consumer ($TRIALS trials)"
    compose_up=1
    compose up -d --no-build --scale producer="$PRODUCERS" >"$WORK/up.log" 2>&1 \
        || { tail -n 20 "$WORK/up.log" >&2; fail "compose up failed (log above)"; }

    wait_until "the consumer to take a job" in_flight 1
    consumer=$(container_of consumer)
    log "killing the consumer container mid-job"
    docker kill "$consumer" >/dev/null
    sleep 2
    [ "$(docker inspect -f '{{.State.Running}}' "$consumer")" = true ] || docker start "$consumer" >/dev/null

    wait_until "a result after the consumer restart" results_stored 2
    log "restarting the Redis container"
    docker restart "$(container_of redis)" >/dev/null

    local deadline=$((SECONDS + SMOKE_TIMEOUT))
    while producer_states Running | grep -qx true; do
        [ "$SECONDS" -lt "$deadline" ] || fail "the producers did not finish within $SMOKE_TIMEOUT s"
        sleep 2
    done
    log "producers finished in $((SECONDS - started)) s"
    compose logs --no-color producer | grep -E "ran [0-9]+ trial" >&2 || true
}

report() {
    # Read back what Redis holds: every submitted job must have exactly one stored result.
    local status failed
    status=$(queue_status) || fail "cannot read the queue back from the consumer container"
    failed=$(producer_states ExitCode | grep -cvx 0 || true)
    python3 - "$status" "$TRIALS" <<'EOF'
import json
import sys

status, trials = json.loads(sys.argv[1]), int(sys.argv[2])
counters = status["counters"]
submitted = counters.get("submitted", 0)
stored = status["results_stored"]
lost = submitted - stored
duplicated = counters.get("duplicates", 0)
print(f"queue: reclaimed {counters.get('reclaimed', 0)}, requeued {counters.get('requeued', 0)}, "
      f"dead-lettered {status['dead_lettered']}, waiting {status['waiting']}, in flight {status['in_flight']}",
      file=sys.stderr)
print(f"{stored}/{submitted} results stored, {lost} lost, {duplicated} duplicated")
sys.exit(0 if submitted >= trials and lost == 0 and duplicated == 0 and status["dead_lettered"] == 0 else 1)
EOF
    [ "$failed" = 0 ] || fail "$failed of $PRODUCERS producers exited with an error (compose logs producer)"
}

check_tools
start_daemon
ensure_base_image
fill_wheels
write_compose_inputs
build_images
run_smoke
report
