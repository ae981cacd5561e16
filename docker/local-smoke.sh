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
# Environment: TRIALS (8), REDIS_PORT (6390; the host's own Redis keeps 6379), WHEELS_PORT (8790:
# docker/wheels/ served to the build on 127.0.0.1), SHARED_DIR
# (../shared beside the repository, mounted read-only), BASE_IMAGE (local/debian:bookworm, made
# with debootstrap when missing), DOCKER_HOST (a reachable daemon is used as it is; else a
# private dockerd is started and stopped at the end), PYTHON (whose installed versions the images
# get: the repository's .venv when there is one, else python3), SMOKE_TIMEOUT (1800 s for the run),
# SMOKE_MIN_FREE_GB (35: free disk the private daemon's vfs storage needs).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIALS=${TRIALS:-8}
REDIS_PORT=${REDIS_PORT:-6390}
WHEELS_PORT=${WHEELS_PORT:-8790}
BASE_IMAGE=${BASE_IMAGE:-local/debian:bookworm}
SHARED_DIR=${SHARED_DIR:-$REPO/../shared}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-1800}
# The interpreter whose installed packages pin the images' dependencies (the tested versions).
PYTHON=${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}
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
wheels_server=

log() { printf '[smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() { printf 'Error: %s\n' "$*" >&2; exit 2; }

compose() {
    # Debian's docker-compose 1.29 predates the Compose Spec's top-level `name:`: it reads a copy
    # without it (write_compose_inputs), with paths resolved from docker/ as for the published file.
    # vfs copies the image's whole tree to create or remove a container: a minute or more each
    # under load, past docker-compose's default 60 s API timeout.
    COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-900} docker-compose --project-name "$PROJECT" --project-directory "$REPO/docker" --env-file "$WORK/smoke.env" \
        -f "$WORK/docker-compose.yml" -f "$REPO/docker/docker-compose.local.yml" "$@"
}

remove_project() {
    # compose down, then whatever it left (a timed-out removal, an interrupted earlier run), by
    # the project label compose puts on its containers and volumes.
    compose down --volumes --remove-orphans --timeout 10 >>"$WORK/down.log" 2>&1
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f -v >/dev/null
    docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null
}

container_of() { compose ps -q "$1" | head -n 1; }

cleanup() {
    local rc=$?
    set +e
    [ -n "$wheels_server" ] && kill "$wheels_server" 2>/dev/null
    if [ "$compose_up" = 1 ]; then
        # The agents' last words, before their containers go.
        [ "$rc" = 0 ] || compose logs --no-color --tail 25 producer consumer >&2
        log "removing the smoke's containers and volumes"
        remove_project
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
    # vfs copies the whole tree for every container: the run peaked at 25 GB here (docs/docker.md).
    local free_gb
    free_gb=$(df --output=avail -BG /var/lib | tail -n 1 | tr -dc 0-9)
    [ "$free_gb" -ge "${SMOKE_MIN_FREE_GB:-35}" ] \
        || fail "only ${free_gb} GB free under /var/lib: the vfs build needs ${SMOKE_MIN_FREE_GB:-35} GB (SMOKE_MIN_FREE_GB)"
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
    # Every dependency as a wheel in docker/wheels/, so the build reaches no package index
    # (WHEELS_ONLY=1): the host's CPU torch wheel (PyPI's is the CUDA build), then the rest as
    # the images' own Python resolves it (its markers differ from the host's), at the versions
    # installed and tested on this host. Skipped when the last collection had the same inputs.
    local torch_version stamp
    torch_version=$(sed -n 's/^ARG TORCH_VERSION=//p' "$REPO/docker/Dockerfile")
    "$PYTHON" -m pip list --format=freeze --exclude-editable >"$WORK/constraints.txt"
    python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$REPO/pyproject.toml" >"$WORK/requirements.txt"
    stamp=$(cat "$WORK/constraints.txt" "$WORK/requirements.txt" <(echo "$torch_version") \
        <(docker image inspect -f '{{.Id}}' "$BASE_IMAGE") | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$WHEELS/.collected" 2>/dev/null)" = "$stamp" ]; then
        log "wheels in docker/wheels/ are up to date"
        return
    fi
    local started=$SECONDS
    log "collecting wheels into docker/wheels/ (torch $torch_version from the host)"
    "$PYTHON" -m pip download --no-deps --dest "$WHEELS" "torch==$torch_version" >"$WORK/wheels.log" 2>&1 \
        || { tail -n 20 "$WORK/wheels.log" >&2; fail "pip download torch failed (log above)"; }
    # A throw-away container of the base image with its own python3-venv; the host's CA bundle:
    # package registries are reached as the host reaches them.
    docker run --rm --network host -e PIP_CERT=/run/host-ca.crt -e DEBIAN_FRONTEND=noninteractive \
        -v "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}:/run/host-ca.crt:ro" -v "$WHEELS:/wheels" \
        -v "$WORK/constraints.txt:/run/constraints.txt:ro" -v "$WORK/requirements.txt:/run/requirements.txt:ro" \
        "$BASE_IMAGE" sh -ec 'apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
            python3 -m venv /tmp/venv
            /tmp/venv/bin/pip download --dest /wheels --find-links /wheels --only-binary=:all: \
                --constraint /run/constraints.txt --requirement /run/requirements.txt "setuptools>=68" wheel' \
        >>"$WORK/wheels.log" 2>&1 || { tail -n 20 "$WORK/wheels.log" >&2; fail "pip download failed (log above)"; }
    echo "$stamp" >"$WHEELS/.collected"
    log "wheels collected in $((SECONDS - started)) s: $(du -sh "$WHEELS" | cut -f1) in docker/wheels/"
}

pick_builder() {
    # BuildKit writes no layer for ENV, USER, VOLUME or CMD; the classic builder runs a container
    # for each, which on vfs copies the whole ~2 GB tree two or three times. Docker CLIs before 23
    # have BuildKit built in (Debian's docker.io); later ones need the buildx plugin.
    if docker buildx version >/dev/null 2>&1; then
        BUILD=(docker buildx build --load)
        return
    fi
    local cli major
    for cli in $(type -ap docker); do
        major=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
        if [ -n "$major" ] && [ "$major" -lt 23 ]; then
            BUILD=(env DOCKER_BUILDKIT=1 BUILDKIT_PROGRESS=plain "$cli" build)
            return
        fi
    done
    log "no BuildKit client (docker buildx, or a docker CLI before 23): the classic builder is slow on vfs"
    BUILD=(env DOCKER_BUILDKIT=0 docker build)
}

serve_wheels() {
    # docker/wheels/ over HTTP on loopback for the build's pip (--find-links): read, not copied
    # into a layer. The build runs with host networking, so 127.0.0.1 is this host. A fixed port:
    # the URL is a build argument, and a new one would invalidate the install step's cache.
    python3 -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$WHEELS_PORT" 2>/dev/null \
        || fail "port $WHEELS_PORT on 127.0.0.1 is taken: set WHEELS_PORT to a free one"
    python3 -m http.server "$WHEELS_PORT" --bind 127.0.0.1 --directory "$WHEELS" >"$WORK/wheels-http.log" 2>&1 &
    wheels_server=$!
    WHEELS_URL=http://127.0.0.1:$WHEELS_PORT/
    for _ in $(seq 20); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1])' "$WHEELS_URL" 2>/dev/null && return
        sleep 0.5
    done
    fail "the wheel server on $WHEELS_URL did not answer"
}

write_compose_inputs() {
    # Nor can an override drop a list: Redis's published port goes here, as host networking
    # admits no port bindings (Redis listens on 127.0.0.1:$REDIS_PORT itself).
    sed -e '/^name:/d' -e '/^    ports:$/,/^      - /d' "$REPO/docker/docker-compose.yml" >"$WORK/docker-compose.yml"
    local token='import secrets; print(secrets.token_hex(16))'
    # The operator's password is kept for queue_status; the agents log in as their ACL users.
    ADMIN_PASSWORD=$(python3 -c "$token")
    local producer_password consumer_password queue_secret
    producer_password=$(python3 -c "$token")
    consumer_password=$(python3 -c "$token")
    queue_secret=$(python3 -c "$token")
    # The study (a journal file) and every trial's folder live in the producers' shared runs volume.
    # The agents' build arguments are build_images' own; only Redis's base is read from here.
    cat >"$WORK/smoke.env" <<EOF
REDIS_PASSWORD=$ADMIN_PASSWORD
PRODUCER_PASSWORD=$producer_password
CONSUMER_PASSWORD=$consumer_password
QUEUE_SECRET=$queue_secret
QUEUE_PREFIX=$PREFIX
REDIS_PORT=$REDIS_PORT
SHARED_DIR=$SHARED_DIR
DATA_FILE=cifar-10-binary-mini.tar.gz
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
CONSUMER_BASE_IMAGE=$BASE_IMAGE
EOF
}

build_images() {
    # Both agent targets share every filesystem layer (they add metadata only): the first build
    # makes them, the second only tags. The same build arguments for both keep it so.
    local started=$SECONDS target step
    pick_builder
    serve_wheels
    log "building the images (${BUILD[*]})"
    for target in consumer producer; do
        step=$SECONDS
        "${BUILD[@]}" --network host -f "$REPO/docker/Dockerfile" --target "$target" \
            --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg WHEELS_URL="$WHEELS_URL" --build-arg WHEELS_ONLY=1 \
            -t "edgeprune-$target:local" "$REPO" >>"$WORK/build.log" 2>&1 \
            || { tail -n 30 "$WORK/build.log" >&2; fail "the $target image build failed (log above)"; }
        log "$target image built in $((SECONDS - step)) s"
    done
    step=$SECONDS
    "${BUILD[@]}" --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t edgeprune-redis:local "$REPO/docker/redis" \
        >>"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "the Redis image build failed (log above)"; }
    log "Redis image built in $((SECONDS - step)) s"
    kill "$wheels_server"
    wait "$wheels_server" 2>/dev/null || true  # 143: it ended by the SIGTERM just sent
    wheels_server=
    log "images built in $((SECONDS - started)) s"
    storage_used
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(edgeprune-|${BASE_IMAGE%%:*})" >&2 || true
}

storage_used() {
    # The private daemon's vfs storage (unknown for another daemon's).
    [ "$started_daemon" = 1 ] && log "vfs storage used: $(du -sh "/var/lib/$PRIVATE" | cut -f1)"
    return 0
}

queue_status() {
    # The queue as the operator sees it from the consumer container (JSON), or nothing while it is
    # down: the consumer's own ACL user may not list keys.
    local consumer
    consumer=$(container_of consumer)
    [ -n "$consumer" ] && docker exec -e EDGEPRUNE_REDIS="redis://:$ADMIN_PASSWORD@127.0.0.1:$REDIS_PORT/0" \
        "$consumer" edgeprune queue status --json --prefix "$PREFIX" 2>/dev/null
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

# The producer containers, listed once after `up`: compose's own listing can come back empty
# while the Redis container restarts, which read as "every producer finished".
producers=()
producer_states() { docker inspect -f "{{.State.$1}}" "${producers[@]}"; }

run_smoke() {
    local started=$SECONDS consumer states
    log "starting Redis, $PRODUCERS producers and 1 consumer ($TRIALS trials)"
    compose_up=1
    remove_project || true
    compose up -d --no-build --scale producer="$PRODUCERS" >"$WORK/up.log" 2>&1 \
        || { tail -n 20 "$WORK/up.log" >&2; fail "compose up failed (log above)"; }
    mapfile -t producers < <(compose ps -q producer)
    [ "${#producers[@]}" = "$PRODUCERS" ] || fail "compose started ${#producers[@]} producers, not $PRODUCERS"

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
    while ! states=$(producer_states Running) || grep -qx true <<<"$states"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "the producers did not finish within $SMOKE_TIMEOUT s"
        sleep 2
    done
    log "producers finished in $((SECONDS - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    storage_used
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
