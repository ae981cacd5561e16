"""Attack run: hostile writes to the queue's Redis keys beyond the test suite's, one verdict each.

Each attack gets a fresh queue (its own key prefix, deleted afterwards), real jobs submitted by a
``JobQueue`` producer, hostile writes with redis-py, and the consumer loop (``Worker`` with the
light ``check_only`` work; the last attack runs a real ``edgeprune consumer --fast``). An attack is
harmless when the consumer did not crash, no key or file the queue did not create was touched,
and no forged figure was believed; the note says what happened instead.

    python benchmarks/queue_attack.py [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from _queue_bench import REPO, export_model, parse_args, scratch_queue

from pipeline.messages import ArtifactRef, Job, Target
from pipeline.queue import JobQueue, QueueConfig, Worker, check_only

TARGET = Target()
SECRET = b"s" * 32
#: An attack: given a fresh queue and a model file, whether it was harmless, and what happened.
Attack = Callable[[JobQueue, Path], tuple[bool, str]]
ATTACKS: list[tuple[str, Attack]] = []


def attack(name: str) -> Callable[[Attack], Attack]:
    def register(fn: Attack) -> Attack:
        ATTACKS.append((name, fn))
        return fn
    return register


def submit(queue: JobQueue, onnx: Path, run_id: str = "real") -> Job:
    return queue.submit(Job(job_id=uuid.uuid4().hex, run_id=run_id, eval_split="",
                            artifact=ArtifactRef(uri="", sha256="", size=0)), onnx)


def serve(queue: JobQueue, stop_after_s: float = 0.0) -> str:
    """Run the consumer loop until the queue is quiet (or for ``stop_after_s``); '' or the crash."""
    stop = threading.Event()
    if stop_after_s:
        threading.Timer(stop_after_s, stop.set).start()
    try:
        Worker(queue, TARGET, check_only, name="attacked").run(
            stop, idle_exit=0 if stop_after_s else 0.7, block_s=0.1)
    except BaseException as exc:  # the point: anything at all escaping is a crash
        return f"consumer crashed: {type(exc).__name__}: {exc}"
    return ""


def entry(job_id: str, uri: str, data: bytes, **fields: Any) -> dict[str, str]:
    return {"job": json.dumps({"job_id": job_id, "run_id": "attacker", "target": TARGET.to_dict(),
                               "eval_split": "", "artifact": {"uri": uri, "size": len(data),
                                                              "sha256": hashlib.sha256(data).hexdigest()},
                               **fields})}


@attack("a job message nested 10,000 levels deep")
def nested_job(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    good = submit(queue, onnx)
    queue.client.xadd(queue.keys.jobs(TARGET.name), {"job": "[" * 10_000 + "]" * 10_000})
    crash = serve(queue)
    return (not crash and queue.result(good.job_id).ok and len(queue.dead_letters()) == 1,
            crash or queue.dead_letters()[0]["error"][:90])


@attack("a negative eval_subset, zero classes, an input shape of no dimensions")
def out_of_range(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    data, ids = onnx.read_bytes(), []
    for fields in ({"eval_subset": -5}, {"model": {"num_classes": 0}}, {"model": {"input_shape": []}}):
        job_id = uuid.uuid4().hex
        ids.append(job_id)
        queue.client.set(queue.keys.artifact(job_id), data)
        queue.client.xadd(queue.keys.jobs(TARGET.name),
                          entry(job_id, f"redis://{queue.keys.artifact(job_id)}", data, **fields))
    crash = serve(queue)
    untouched = all(queue.client.get(queue.keys.artifact(i)) == data for i in ids)
    return not crash and len(queue.dead_letters()) == 3 and untouched, crash or "3 dead letters, artifacts untouched"


@attack("job ids of Arabic-Indic digits, of 65 characters, and '-rf'")
def odd_ids(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    data = onnx.read_bytes()
    for job_id in ("\u0661\u0662\u0663", "a" * 65):
        queue.client.xadd(queue.keys.jobs(TARGET.name), entry(job_id, "redis://x", data))
    queue.client.set(queue.keys.artifact("-rf"), data)
    queue.client.xadd(queue.keys.jobs(TARGET.name), entry("-rf", f"redis://{queue.keys.artifact('-rf')}", data))
    crash = serve(queue)
    return (not crash and len(queue.dead_letters()) == 2 and queue.result("-rf").ok,
            crash or "2 refused; '-rf' is a valid id, run in its own scratch folder (ids name no command)")


@attack("the stats hash replaced by a string, then a bad entry")
def stats_of_another_type(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    good = submit(queue, onnx)
    queue.client.delete(queue.keys.stats)
    queue.client.set(queue.keys.stats, "x")
    queue.client.xadd(queue.keys.jobs(TARGET.name), {"job": "junk"})
    crash = serve(queue)
    return (not crash and queue.result(good.job_id).ok and len(queue.dead_letters()) == 1,
            crash or "both settled; only the counters are lost")


@attack("the deliveries hash replaced by a string")
def deliveries_of_another_type(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    submit(queue, onnx)
    queue.client.delete(queue.keys.deliveries)
    queue.client.set(queue.keys.deliveries, "x")
    crash = serve(queue)
    return (not crash and len(queue.dead_letters()) == 1,
            crash or "the job is dead-lettered (no result: its producer times out), no crash")


@attack("the job stream itself replaced by a string")
def stream_of_another_type(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    queue.client.set(queue.keys.jobs(TARGET.name), "x")
    crash = serve(queue, stop_after_s=2.0)
    return (not crash and queue.client.get(queue.keys.jobs(TARGET.name)) == b"x",
            crash or "the consumer logs, backs off and stays up; the key is left alone")


@attack("the producer's done list replaced by a hash")
def done_of_another_type(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    good = submit(queue, onnx)
    queue.client.hset(queue.keys.done(good.job_id), "a", "b")
    crash = serve(queue)
    result = queue.wait_result(good.job_id, 2)
    return (not crash and result is not None and result.ok,
            crash or "stored and read (the producer polls instead of blocking on the list)")


@attack("a real job's claim key replaced by a hash before a consumer reads the job")
def claim_of_another_type(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    good = submit(queue, onnx)
    queue.client.delete(queue.keys.claim(good.job_id))
    queue.client.hset(queue.keys.claim(good.job_id), "a", "b")
    crash = serve(queue)
    untouched = (queue.client.get(queue.keys.artifact(good.job_id)) == onnx.read_bytes()
                 and queue.client.get(queue.keys.result(good.job_id)) is None)
    return not crash and untouched, crash or "dead-lettered alone: that job gets no result (its producer times out)"


@attack("a claim registered for an id before its producer submits it")
def pre_claimed(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    job_id = uuid.uuid4().hex
    queue.client.set(queue.keys.claim(job_id), "attacker")
    queue.submit(Job(job_id=job_id, run_id="real", eval_split="",
                     artifact=ArtifactRef(uri="", sha256="", size=0)), onnx)
    crash = serve(queue)
    return not crash and queue.result(job_id).ok, crash or "submit records the id's identity afresh"


@attack("forged results of 5 MB and nested 100,000 deep")
def huge_results(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    job = submit(queue, onnx)
    got = []
    for text in (json.dumps({"job_id": job.job_id, "run_id": "real", "status": "ok", "error": "x" * 5_000_000}),
                 '{"job_id": "%s", "run_id": "real", "status": "ok", "metrics": {"a": %s}}'
                 % (job.job_id, "[" * 100_000 + "]" * 100_000)):
        queue.client.set(queue.keys.result(job.job_id), text)
        got.append(queue.wait_result(job.job_id, 0.3))
    return got == [None, None], "both ignored"


@attack("signed queue: a signed job replayed under a new id, a signed result under another job")
def replays(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    queue = JobQueue(queue.client, queue.keys.prefix, QueueConfig(secret=SECRET))
    first, second = submit(queue, onnx, "run-a"), submit(queue, onnx, "run-b")
    body = json.loads(queue.client.xrange(queue.keys.jobs(TARGET.name))[0][1][b"job"])
    queue.client.xadd(queue.keys.jobs(TARGET.name), {"job": json.dumps({**body, "job_id": uuid.uuid4().hex})})
    crash = serve(queue)
    queue.client.set(queue.keys.result(second.job_id), queue.client.get(queue.keys.result(first.job_id)))
    believed = queue.wait_result(second.job_id, 0.3)
    return (not crash and believed is None and len(queue.dead_letters()) == 1,
            crash or "the replayed job is dead-lettered; the replayed result names another job: ignored")


@attack("unsigned queue: a well-formed forged result naming the right job and run id")
def plausible_forgery(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    job = submit(queue, onnx)
    queue.client.set(queue.keys.result(job.job_id), json.dumps(
        {"job_id": job.job_id, "run_id": "real", "status": "ok",
         "metrics": {"Top1": 99.0, "Total_Latency": 0.01, "Throughput": 1.0}}))
    believed = queue.wait_result(job.job_id, 0.3)
    return (believed is None, "believed: only a queue secret (or the ACL users, which keep producers "
                              "from writing results) stops it" if believed else "ignored")


@attack("a tiny ONNX declaring a 1x3x20000x20000 input, measured by a real consumer")
def huge_input(queue: JobQueue, onnx: Path) -> tuple[bool, str]:
    import onnx as onnx_lib
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ReduceMean", ["input"], ["out"], keepdims=0)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 20000, 20000])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = onnx.parent / "huge_input.onnx"
    onnx_lib.save(model, str(path))
    job = submit(queue, path)
    done = subprocess.run([sys.executable, "-m", "edgeprune", "consumer", "--redis", REDIS_URL, "--prefix",
                           queue.keys.prefix, "--fast", "--max-jobs", "1", "--idle-exit", "20",
                           "--job-timeout", "60", "--data",
                           str(REPO.parent / "shared" / "data" / "cifar10-jpeg-mini.tar.gz")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    result = queue.result(job.job_id)
    note = result.error[:120] if result is not None else done.stderr[-200:]
    return done.returncode == 0 and result is not None and not result.ok, f"exit {done.returncode}: {note}"


def main() -> None:
    global REDIS_URL
    args = parse_args(__doc__, 0, "unused")
    REDIS_URL = args.redis
    logging.basicConfig(level=logging.CRITICAL)
    harmless = 0
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_model("resnet20_cifar", Path(tmp) / "resnet20.onnx")
        for name, run in ATTACKS:
            with scratch_queue(args.redis, "attack") as queue:
                ok, note = run(queue, onnx)
            harmless += ok
            print(f"{'harmless' if ok else 'HARMFUL '}  {name}: {note}", flush=True)
    print(f"{harmless} harmless / {len(ATTACKS) - harmless} harmful of {len(ATTACKS)} attacks")


REDIS_URL = ""

if __name__ == "__main__":
    main()
