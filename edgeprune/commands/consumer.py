"""``edgeprune consumer``: take jobs from the Redis queue, benchmark them, report the results."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from pipeline.errors import QueueError, shown
from pipeline.flow import measure_work
from pipeline.messages import Job, Result, Target
from pipeline.queue import QueueConfig
from pipeline.queue import check_only as check_only_work
from pipeline.queue.worker import WorkFn, abandoned_work_running, default_name
from pipeline.redact import redact_url
from pipeline.settings import Settings

from .options import FiniteFloat, check_target_names, measure_options, quiet_wait_option, redis_option, settings_options
from .queue import consumer_queue_options, server_queue

#: A consumer's name goes into its heartbeat key and every result it writes.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def _check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _NAME.fullmatch(value):
        raise QueueError(f"consumer name {shown(value)} is not 1-100 letters, digits, '.', '_' or '-': "
                         "pass --name like gpu-box-1")
    return value


@click.command()
@redis_option
@click.option("--backend", default="openvino", show_default=True,
              type=click.Choice(["openvino", "onnxruntime"]),
              help="Engine this consumer measures with: it serves the jobs queued for this "
                   "backend and --device (each job brings its own precision).")
@click.option("--device", "target_device", default="CPU", show_default=True,
              help="Engine device: CPU, GPU or NPU for OpenVINO (GPU/NPU need /dev/dri or "
                   "/dev/accel in a container); CPU for ONNX Runtime.")
@click.option("--name", default=None, callback=_check_name,
              help="Consumer name in the queue and in results [default: <host>-<pid>]; keep it "
                   "unique among running consumers.")
@click.option("--max-jobs", default=0, show_default=True, type=click.IntRange(min=0),
              help="Exit after this many jobs (0: no limit).")
@click.option("--idle-exit", default=0.0, show_default=True, type=FiniteFloat(min=0),
              help="Exit after this many seconds without a job (0: never).")
@click.option("--fast", is_flag=True,
              help="Short measurements (a few dozen inferences): for smoke tests, figures are noisy.")
@quiet_wait_option
@click.option("--check-only", is_flag=True,
              help="Only fetch, verify and parse each model, reporting its size and node count: "
                   "tests the queue plumbing without measuring.")
@consumer_queue_options
@settings_options
def consumer(settings: Settings, redis_url: str | None, backend: str, target_device: str,
             name: str | None, max_jobs: int, idle_exit: float, fast: bool, quiet_wait: float,
             check_only: bool, prefix: str, queue_config: QueueConfig) -> None:
    """Serve the job queue of one target (backend and device) until stopped.

    SIGTERM or Ctrl-C: finish the current job, then exit; a second one releases the job back to
    the queue. A consumer that dies is noticed by its missing keep-alive: its job goes to another
    consumer after --visibility-timeout seconds.
    """
    from consumer.agent import run_consumer

    if not redis_url:
        raise QueueError("the consumer needs a queue to serve: pass --redis redis://host:6379/0 "
                         "(or set EDGEPRUNE_REDIS)")
    target = check_target_names(Target(backend=backend, device=target_device))
    queue = server_queue(redis_url, prefix, queue_config)
    work: WorkFn
    if check_only:
        work, engine = check_only_work, "check only (no measurement)"
    else:
        from pipeline.measure import check_target, engine_version

        check_target(target)
        work, engine = measure_work(settings, measure_options(fast, quiet_wait)), engine_version(backend)
    click.echo(f"consumer {name or default_name()}: serving {backend} {target_device} jobs from "
               f"{redact_url(redis_url)} (prefix {prefix}), {engine}", err=True)
    stats = run_consumer(queue, target, talking(work), name=name, max_jobs=max_jobs,
                         idle_exit=idle_exit)
    click.echo(f"consumer stopped: {stats.done} done, {stats.failed} failed, {stats.duplicates} duplicate(s), "
               f"{stats.released} released", err=True)
    if abandoned_work_running():
        # A measurement abandoned at --job-timeout still runs in native code: the interpreter's
        # normal exit would destroy its thread under it (the C++ runtime aborts). Everything of
        # ours is settled and flushed, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def job_line(job: Job, result: Result) -> str:
    """One line per finished job: id, model, precision that ran, latency and Top1, seconds."""
    from pipeline.progress import format_metric

    m = result.metrics
    model = f"{job.model.macs / 1e6:.1f}M MACs, {job.model.params:,} params"
    seconds = max(0.0, result.finished_at - result.started_at)
    if not result.ok:
        return f"job {job.job_id[:12]} ({model}): failed after {seconds:.1f} s: {result.error}"
    figures = ", ".join(f"{n} {format_metric(n, m[n])}" for n in ("Total_Latency", "Latency", "Top1")
                        if m.get(n) is not None)
    precision = m.get("precision", job.target.precision)
    return f"job {job.job_id[:12]} ({model}) {precision}: {figures or 'checked'} in {seconds:.1f} s"


def talking(work: WorkFn) -> WorkFn:
    """``work`` that prints :func:`job_line` to stderr after each job."""
    def work_and_say(job: Job, onnx_path: Path) -> Result:
        result = work(job, onnx_path)
        click.echo(job_line(job, result), err=True)
        return result

    return work_and_say
