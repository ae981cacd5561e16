"""``edgeprune queue status|dead``: what the Redis job queue holds; and the queue flags that the
producer and consumer commands share."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import click

from pipeline.errors import QueueError
from pipeline.queue import JobQueue, QueueConfig, connect
from pipeline.queue.config import check_prefix
from pipeline.queue.signing import SECRET_ENV, SECRET_FILE_ENV, load_secret

from .options import FiniteFloat, check_artifact_store, redis_option

_DEFAULTS = QueueConfig()

_prefix_option = click.option(
    "--prefix", default="edgeprune", show_default=True,
    callback=lambda ctx, param, value: check_prefix(value),
    help="Key prefix of the queue on Redis (letters, digits, '.', '_', '-'): deployments (or "
         "tests) with different prefixes share a server without seeing each other's jobs.")


_visibility_option = click.option(
    "--visibility-timeout", type=FiniteFloat(min=0.1), default=_DEFAULTS.visibility_timeout_s,
    show_default=True,
    help="Seconds a claimed job may go without its consumer's keep-alive before another consumer "
         "takes it over (a live consumer renews it every third of this).")
_attempts_option = click.option(
    "--max-attempts", type=click.IntRange(min=1), default=_DEFAULTS.max_attempts, show_default=True,
    help="Deliveries of a job before it is dead-lettered with its last error.")
_artifacts_option = click.option(
    "--artifacts", "artifact_store", default=_DEFAULTS.artifact_store, show_default=True,
    callback=lambda ctx, param, value: check_artifact_store(value),
    help="Where model files wait for their consumer: 'redis' (a key with a TTL on the queue's "
         "Redis; nothing else shared) or file:///dir (a directory every producer and consumer "
         "mounts at the same path). A consumer reads and deletes artifacts only there.")
#: No convolutional network's ONNX file fits under this many MiB: a smaller --max-artifact-mb is
#: a slip of the unit, refused before any pruning instead of after the export.
MIN_ARTIFACT_MB = 0.01

_artifact_size_option = click.option(
    "--max-artifact-mb", type=FiniteFloat(min=MIN_ARTIFACT_MB),
    default=_DEFAULTS.max_artifact_bytes / 2**20, show_default=True,
    help="Largest model file, in MiB, a producer queues or a consumer reads (checked before reading; "
         f"at least {MIN_ARTIFACT_MB}). A model over it is refused when it is exported, before it is queued.")

_job_timeout_option = click.option(
    "--job-timeout", type=FiniteFloat(min=0), default=_DEFAULTS.job_timeout_s, show_default=True,
    help="Seconds one job's measurement may take; past it the job fails with that reason (no "
         "retry) and the consumer takes the next one. 0: no limit.")
# The secret itself never goes on the command line (ps and shell history show it): a file, or
# the environment.
_secret_option = click.option(
    "--queue-secret-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help=f"File holding the shared secret that signs every job and result (HMAC-SHA256); agents "
         f"then refuse unsigned or wrongly signed messages. Without it: env {SECRET_FILE_ENV} "
         f"(a file) or {SECRET_ENV} (the secret); none of them: messages are unsigned.")

#: QueueConfig field for each queue flag's parameter name (MiB converted to bytes).
_CONFIG_FIELDS = {"visibility_timeout": "visibility_timeout_s", "max_attempts": "max_attempts",
                  "artifact_store": "artifact_store", "max_artifact_mb": "max_artifact_bytes",
                  "job_timeout": "job_timeout_s"}


def _param_name(option: Callable[..., Any]) -> str:
    """The parameter name a click option decorator adds."""
    return option(lambda: None).__click_params__[-1].name


def _with_queue_config(*options: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding --prefix and ``options``, which it folds into ``queue_config``."""

    # Only the parameters of these options are folded: a command may have a flag of its own
    # with one of the same names (latency profile's --job-timeout).
    names = [_param_name(option) for option in options]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {_CONFIG_FIELDS[name]: kwargs.pop(name) for name in names}
            if "max_artifact_bytes" in values:
                values["max_artifact_bytes"] = int(values["max_artifact_bytes"] * 2**20)
            values["secret"] = load_secret(kwargs.pop("queue_secret_file"))
            kwargs["queue_config"] = QueueConfig(**values)
            return func(**kwargs)

        for option in reversed((_prefix_option, *options, _secret_option)):
            wrapper = option(wrapper)
        return wrapper

    return decorate


#: Both sides name the artifact store and its size limit; the consumer also how long a claim lasts.
producer_queue_options = _with_queue_config(_artifacts_option, _artifact_size_option)
consumer_queue_options = _with_queue_config(_visibility_option, _attempts_option, _artifacts_option,
                                            _artifact_size_option, _job_timeout_option)


def server_queue(redis_url: str | None, prefix: str = "edgeprune",
               config: QueueConfig | None = None) -> JobQueue:
    """The queue on the Redis at ``redis_url``; inspecting needs a server, not the in-process one."""
    if not redis_url:
        raise QueueError("no Redis URL: pass --redis redis://host:6379/0 (or set EDGEPRUNE_REDIS); "
                         "without one, jobs run inside the submitting process: there is no queue to inspect")
    return JobQueue(connect(redis_url), prefix, config)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def queue() -> None:
    """Inspect the Redis job queue (needs --redis or EDGEPRUNE_REDIS)."""


@queue.command()
@redis_option
@_prefix_option
@_json_option
def status(redis_url: str | None, prefix: str, as_json: bool) -> None:
    """Waiting and in-flight jobs per target, dead letters, stored results and live consumers."""
    info = server_queue(redis_url, prefix).status()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    counters = info["counters"]
    click.echo(f"queue {info['prefix']}: {info['waiting']} waiting, {info['in_flight']} in flight, "
               f"{info['dead_lettered']} dead-lettered, {info['results_stored']} results stored "
               f"({counters.get('ok', 0)} ok, {counters.get('dead', 0)} failed over the queue's life)")
    for name, target in info["targets"].items():
        click.echo(f"  {name}: {target['waiting']} waiting, {target['in_flight']} in flight")
        for job in target["in_flight_jobs"]:
            click.echo(f"    {job['entry_id']}  consumer {job['consumer']}  idle {job['idle_s']:.1f} s"
                       f"  deliveries {job['deliveries']}")
    click.echo(f"consumers alive: {len(info['consumers'])}")
    for beat in info["consumers"]:
        current = beat.get("current_job") or "idle"
        click.echo(f"  {beat['name']} on {beat['host']} ({beat['target']}): {current}, "
                   f"{beat['done']} done, {beat['failed']} failed, seen {beat['last_seen_s']:.1f} s ago")


@queue.command()
@redis_option
@_prefix_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Show the newest N dead letters.")
@_json_option
def dead(redis_url: str | None, prefix: str, limit: int, as_json: bool) -> None:
    """Dead-lettered jobs, newest first, with the reason each one failed."""
    rows = server_queue(redis_url, prefix).dead_letters(limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no dead-lettered jobs")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
        click.echo(f"{when}  job {row['job_id'] or '?'}  {row.get('target', '')}  "
                   f"{row['attempts']} attempt(s): {row['error']}")
