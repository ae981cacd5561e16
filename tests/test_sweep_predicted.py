"""Searching on the predicted latency (ResNet20 + the mini data): the gate predicts instead of
measuring, the measured figure replaces the prediction, the study stores the latency model for
every worker, rapid trials export nothing, and the multi-fidelity rungs fine-tune the promoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import SweepError, UserError
from pipeline.flow import PREDICTED, RunConfig, measure_work
from pipeline.latency import LatencyModel, LatencyModels
from pipeline.measure.options import MeasureOptions
from pipeline.messages import Target
from pipeline.queue import open_queue
from pipeline.rapid import RapidEvaluator
from pipeline.search.config import load_sweep
from pipeline.search.engine import SweepRunner, best_trials, open_study
from pipeline.search.fidelity import MultiFidelityRunner, make_rapid_trial_function, promote, rapid_config
from pipeline.search.gate import PREDICTED_RELATIVE
from pipeline.search.predictor import LATENCY_MODELS_ATTR, study_latency_models, trial_precisions
from pipeline.search.storage import load_trials, open_storage
from pipeline.search.trials import make_trial_function
from pipeline.status import TrialStatus

REPO = Path(__file__).resolve().parent.parent
RESNET20 = REPO / "schedules" / "resnet20_filter_rank.yaml"
GROUPS = ["conv@32x32", "conv@16x16", "conv@8x8", "linear@1x1"]


def _latency_model_json(model_name: str = "resnet20_cifar", precision: str = "fp32", scale: float = 1.0) -> str:
    """A small hand-written latency model: 0.1 ms, plus per group and per term (TERMS) 0.02 ms a
    unit, all times ``scale``."""
    from pipeline.latency.features import TERMS
    from pipeline.latency.model import FORMAT_VERSION

    coefficients = [0.1 * scale] + [0.02 * scale for _ in GROUPS for _ in TERMS]
    return json.dumps({"version": FORMAT_VERSION,
                       "target": {"backend": "openvino", "device": "CPU", "precision": precision},
                       "model_name": model_name, "groups": GROUPS, "simd_block": 16,
                       "coefficients": coefficients, "reference_ms": 1.0})


@pytest.fixture
def latency_model() -> LatencyModel:
    return LatencyModel.from_json(_latency_model_json())


@pytest.fixture
def latency_models(latency_model: LatencyModel) -> LatencyModels:
    return LatencyModels((latency_model,))


@pytest.fixture
def latency_model_file(tmp_path: Path) -> Path:
    path = tmp_path / "lm.json"
    path.write_text(_latency_model_json())
    return path


def _sweep(limit: float, epochs: int = 1, extra: str = "") -> str:
    return f"""
method: random
metric: {{name: Total_Latency, goal: minimize, target: {limit:f}}}
parameters:
  filter_pruner_50_desired_sparsity: {{values: [0.3, 0.5]}}
  epochs: {{value: {epochs}}}
{extra}"""


class _Counting:
    """The in-process queue's work, counting the jobs it gets."""

    def __init__(self, settings):
        self.jobs = 0
        self.work = measure_work(settings, MeasureOptions.fast())

    def __call__(self, job, onnx_path):
        self.jobs += 1
        return self.work(job, onnx_path)


def _never_measured(onnx_path, facts, target):
    raise AssertionError("the gate measured although it has a latency model")


def _gated_sweep(settings, out: Path, latency_models: LatencyModels, limit: float, n_trials: int,
                 sweep: str | None = None):
    """A sweep of ``n_trials`` (``sweep``, default ``_sweep(limit)``) with a gate at ``limit`` ms on
    ``latency_models``, whose measuring gate fails the test if called: (config, study, runner,
    records, the consumer)."""
    config = load_sweep(sweep or _sweep(limit=limit))
    study = open_study(config, open_storage(out), "predicted", seed=0)
    base = RunConfig(schedule=RESNET20, model="resnet20_cifar", max_steps_per_epoch=1, eval_split="val",
                     eval_subset=100)
    consumer = _Counting(settings)
    with open_queue(None, consumer, base.target) as queue:
        runner = SweepRunner(config, study, make_trial_function(base, settings, queue, 120), out,
                             n_trials=n_trials, measure=_never_measured, target=base.target,
                             latency_models=latency_models)
        records = runner.run()
    return config, study, runner, records, consumer


def test_predicting_gate_skips_retraining_without_the_device(settings, tmp_path, latency_models):
    _, _, runner, records, consumer = _gated_sweep(settings, tmp_path, latency_models, 0.000001, 2)
    assert consumer.jobs == 0 and runner.gate_measurements == 0
    for record in records:
        assert record.status == TrialStatus.GATED and "predicted Total_Latency" in record.reason
        # A gated trial records the prediction only, never a measurement it did not make.
        assert record.metrics[PREDICTED] > 0.000001 and "Total_Latency" not in record.metrics
        # Beside the ms, the prediction over the latency model's unpruned median.
        reference_ms = latency_models.require(Target(), "resnet20_cifar").reference_ms
        assert record.metrics[PREDICTED_RELATIVE] == pytest.approx(
            record.metrics[PREDICTED] / reference_ms, rel=1e-3)
        result = json.loads(Path(record.run_dir, "result.json").read_text())
        assert "gate" in result["stage_seconds"] and "retrain" not in result["stage_seconds"]
        assert result["metrics"][PREDICTED] == record.metrics[PREDICTED]
        assert not list(Path(record.run_dir).glob("*.onnx"))  # nothing exported for the gate


def test_measured_latency_replaces_the_prediction(settings, tmp_path, latency_models):
    config, study, _, [record], consumer = _gated_sweep(settings, tmp_path, latency_models, 1000.0, 1)
    assert record.status == TrialStatus.OK and consumer.jobs == 1
    measured, predicted = record.metrics["Total_Latency"], record.metrics[PREDICTED]
    assert measured > 0 and predicted > 0 and measured != predicted
    assert record.metrics["epochs_run"] == 1
    result = json.loads(Path(record.run_dir, "result.json").read_text())
    assert (result["metrics"]["Total_Latency"], result["metrics"][PREDICTED]) == (measured, predicted)
    # The sampler and the ranking see the measured figure.
    assert study.trials[0].values == [measured]
    assert best_trials(config, load_trials(tmp_path))[0].metrics["Total_Latency"] == measured


def test_second_worker_reuses_the_study_latency_model(tmp_path, latency_model, latency_model_file):
    config = load_sweep(_sweep(limit=1.0))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    target = Target()
    first = open_study(config, open_storage(url), "shared", seed=0)
    assert study_latency_models(first, [latency_model_file], target, "resnet20_cifar").models == (latency_model,)
    # Another worker: its own storage object, no file.
    second = open_study(config, open_storage(url), "shared", seed=1)
    assert LATENCY_MODELS_ATTR in second.user_attrs
    assert study_latency_models(second, [], target, "resnet20_cifar").models == (latency_model,)
    with pytest.raises(UserError, match="profiled on openvino/CPU/fp32 for resnet20_cifar, not") as error:
        study_latency_models(second, [], Target(precision="int8"), "resnet20_cifar")
    assert "\n" not in str(error.value)
    other = tmp_path / "other.json"
    other.write_text(_latency_model_json().replace("0.02", "0.03"))
    with pytest.raises(SweepError, match="already holds other latency models"):
        study_latency_models(second, [other], target, "resnet20_cifar")
    foreign = tmp_path / "resnet56.json"
    foreign.write_text(_latency_model_json("resnet56_cifar"))
    with pytest.raises(UserError, match="for resnet56_cifar, not openvino/CPU/fp32 for resnet20_cifar"):
        study_latency_models(open_study(config, open_storage(url), "fresh", seed=0), [foreign], target,
                             "resnet20_cifar")


def test_rapid_trial_gives_adaptive_bn_top1_and_predicted_latency_without_export(
        settings, latency_models, monkeypatch):
    import pipeline.export

    def no_export(*args, **kwargs):
        raise AssertionError("a rapid trial exported its model")

    monkeypatch.setattr(pipeline.export, "export_onnx", no_export)
    base = RunConfig(schedule=RESNET20, model="resnet20_cifar", bn_recalibrate=256)
    evaluator = RapidEvaluator(base, settings, latency_models, images=200)
    light = evaluator(overrides=["filter_pruner_50.desired_sparsity=0.2"])
    heavy = evaluator(overrides=["filter_pruner_50.desired_sparsity=0.8", "filter_pruner_40.desired_sparsity=0.7"])
    for result in (light, heavy):
        assert result.status in (TrialStatus.RAPID, TrialStatus.COLLAPSED)
        assert 0 <= result.metrics["Top1_before"] <= 100 and result.metrics["eval_images"] == 200
        assert result.metrics["bn_recalibrate"] == 256
        assert set(result.stage_seconds) == {"prune", "recalibrate_bn", "evaluate", "predict"}
    assert light.status == TrialStatus.RAPID and light.metrics["Top1_before"] > 50
    # More pruning: fewer MACs, a lower predicted latency.
    assert heavy.metrics["macs"] < light.metrics["macs"]
    assert heavy.metrics[PREDICTED] < light.metrics[PREDICTED]
    # The record names the pruned architecture (search_quality keys twin finalists on it).
    assert light.metrics["arch_signature"] == light.facts.arch_signature != heavy.metrics["arch_signature"]


def test_promote_takes_the_best_share_by_pareto_layer():
    from pipeline.messages import TrialRecord

    config = rapid_config(load_sweep(_sweep(limit=2.0, extra="""  edgeprune:
    value:
      metrics: [{name: Total_Latency, goal: minimize}, {name: Top1, goal: maximize}]
      fidelity: {rapid: 100, promote: 0.5}
""")))
    assert [o.name for o in config.objectives] == [PREDICTED, "Top1_before"] and not config.constraints
    points = [(1.0, 50.0), (1.5, 70.0), (1.2, 40.0), (1.8, 60.0), (2.5, 90.0), (1.1, 45.0)]
    records = [TrialRecord(number=i, status="rapid", metrics={PREDICTED: lat, "Top1_before": top1})
               for i, (lat, top1) in enumerate(points)]
    source = load_sweep(_sweep(limit=2.0))
    # Trial 4 misses the gate's 2 ms; the front is 0 and 1, then 5 and 3 (second layer), then 2.
    chosen = promote(records, config.objectives, 0.5, source.gate)
    assert [r.number for r in chosen] == [0, 1, 5]


@pytest.mark.slow
def test_multi_fidelity_sweep_fine_tunes_and_measures_the_promoted(settings, tmp_path, latency_models):
    config = load_sweep(_sweep(limit=1000.0, epochs=0, extra="""  edgeprune:
    value:
      metrics: [{name: Total_Latency, goal: minimize}, {name: Top1, goal: maximize}]
      fidelity: {rapid: 100, short_epochs: 1, promote: 0.5, full_epochs: 2}
""").replace("values: [0.3, 0.5]", "values: [0.2, 0.4, 0.6, 0.8]"))
    study = open_study(config, open_storage(tmp_path), "fidelity", seed=0)
    base = RunConfig(schedule=RESNET20, model="resnet20_cifar", max_steps_per_epoch=1, eval_split="val",
                     eval_subset=100, bn_recalibrate=128)
    consumer = _Counting(settings)
    with open_queue(None, consumer, base.target) as queue:
        runner = MultiFidelityRunner(config, study, make_rapid_trial_function(base, settings, latency_models, 100),
                                     make_trial_function(base, settings, queue, 120), tmp_path, n_trials=4, seed=0)
        records = runner.run()
    rapid = [r for r in records if r.metrics["rung"] == 0]
    short = [r for r in records if r.metrics["rung"] == 1]
    full = [r for r in records if r.metrics["rung"] == 2]
    assert len(rapid) == 4 and all(r.status in ("rapid", "collapsed") and "Total_Latency" not in r.metrics
                                   for r in rapid)
    assert all(r.metrics[PREDICTED_RELATIVE] > 0 for r in rapid)
    assert len(short) == 2 and len(full) == 1 and consumer.jobs == 3
    for record in short + full:
        assert record.status == TrialStatus.OK and record.metrics["Total_Latency"] > 0
        assert record.metrics[PREDICTED] > 0 and record.params["epochs"] == record.metrics["epochs_run"]
    # load_trials shows each trial at its highest rung; the ranking reads measured figures only.
    stored = {r.number: r for r in load_trials(tmp_path)}
    assert stored[full[0].number].metrics["rung"] == 2
    front = best_trials(config, list(stored.values()))
    assert front and all(r.metrics["rung"] >= 1 for r in front)


def _data_args(settings) -> list[str]:
    return ["--data", str(settings.data), "--cache-dir", str(settings.cache_dir)]


def test_sweep_cli_stores_the_latency_model_and_gates_on_it(settings, tmp_path, latency_model_file,
                                                            latency_model):
    from click.testing import CliRunner

    from edgeprune.cli import cli

    sweep = tmp_path / "gated.yaml"
    sweep.write_text(_sweep(limit=0.000001))
    out = tmp_path / "out"
    args = ["sweep", str(sweep), "--trials", "2", "--out", str(out), "--schedule", str(RESNET20),
            "--model", "resnet20_cifar", "--max-steps", "1", "--no-baselines", "--json", *_data_args(settings)]
    result = CliRunner().invoke(cli, [*args, "--latency-model", str(latency_model_file)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = load_trials(out)
    assert [r.status for r in records] == ["gated", "gated"] and all(PREDICTED in r.metrics for r in records)
    # A resumed sweep (another worker) without the file predicts with the stored model.
    resumed = CliRunner().invoke(cli, [*args[:3], "3", *args[4:]], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert [r.status for r in load_trials(out)] == ["gated"] * 3
    [stored] = open_study(load_sweep(sweep), open_storage(out), "gated").user_attrs[LATENCY_MODELS_ATTR]
    assert LatencyModel.from_dict(stored) == latency_model


def test_fidelity_without_latency_model_and_producer_limit_without_model_are_one_line(settings, tmp_path):
    from click.testing import CliRunner

    from edgeprune.cli import cli

    sweep = tmp_path / "fidelity.yaml"
    sweep.write_text(_sweep(limit=1.0, extra="""  edgeprune:
    value: {fidelity: {rapid: 100}}
"""))
    result = CliRunner().invoke(cli, ["sweep", str(sweep), "--trials", "1", "--out", str(tmp_path / "o"),
                                      "--schedule", str(RESNET20), "--model", "resnet20_cifar",
                                      *_data_args(settings)])
    # UserErrors, which the console entry point prints as one Error: line with exit status 2.
    assert isinstance(result.exception, UserError) and "\n" not in str(result.exception)
    assert "fidelity ranks rapid trials on predicted latency: pass --latency-model" in str(result.exception)
    result = CliRunner().invoke(cli, ["producer", "--schedule", str(RESNET20), "--model", "resnet20_cifar",
                                      "--latency-limit", "2", *_data_args(settings)])
    assert isinstance(result.exception, UserError) and "--latency-limit needs --latency-model" in str(result.exception)


def test_fidelity_options_are_checked():
    with pytest.raises(SweepError, match="fidelity.promote is 1.5"):
        load_sweep(_sweep(limit=1.0, extra="  edgeprune: {value: {fidelity: {promote: 1.5}}}\n"))
    with pytest.raises(SweepError, match="fidelity.full_epochs is 1: give more than short_epochs"):
        load_sweep(_sweep(limit=1.0, extra="  edgeprune: {value: {fidelity: {full_epochs: 1}}}\n"))
    config = load_sweep(_sweep(limit=1.0, extra="  edgeprune: {value: {fidelity: {full_epochs: 5}}}\n"))
    assert config.fidelity.rungs == [1, 5] and config.fidelity.rapid == 500
    with pytest.raises(SweepError, match="but the sweep optimises Latency"):
        rapid_config(load_sweep(_sweep(limit=1.0, extra="  edgeprune: {value: {fidelity: {}}}\n")
                                .replace("name: Total_Latency", "name: Latency")))


def _model_file(folder: Path, precision: str, scale: float = 1.0) -> Path:
    path = folder / f"lm-{precision}.json"
    path.write_text(_latency_model_json(precision=precision, scale=scale))
    return path


def test_each_rapid_trial_is_priced_by_the_model_of_its_precision(settings, tmp_path):
    # An "int8" model at half the fp32 one's every coefficient predicts exactly half for one architecture.
    models = LatencyModels(tuple(LatencyModel.from_json(_latency_model_json(precision=p, scale=s))
                                 for p, s in (("fp32", 1.0), ("int8", 0.5))))
    base = RunConfig(schedule=RESNET20, model="resnet20_cifar", bn_recalibrate=64)
    evaluator = RapidEvaluator(base, settings, models, images=50)
    prune = ["filter_pruner_50.desired_sparsity=0.4"]
    fp32 = evaluator(base, overrides=prune).metrics[PREDICTED]
    int8 = evaluator(RunConfig(schedule=RESNET20, model="resnet20_cifar", bn_recalibrate=64,
                               target=Target(precision="int8")), overrides=prune).metrics[PREDICTED]
    assert fp32 > 0 and int8 == pytest.approx(fp32 / 2, abs=1e-4)
    with pytest.raises(UserError, match="no latency model of openvino/CPU/fp16 for resnet20_cifar") as error:
        evaluator(RunConfig(schedule=RESNET20, model="resnet20_cifar", target=Target(precision="fp16")),
                  overrides=prune)
    assert "--precision fp16 --out lm.json" in str(error.value) and "\n" not in str(error.value)


def test_a_study_keeps_one_model_per_searched_precision(tmp_path):
    config = load_sweep(_sweep(limit=1.0, extra="  precision: {values: [fp32, int8]}\n"))
    assert trial_precisions(config, Target()) == ("fp32", "int8")
    assert trial_precisions(load_sweep(_sweep(limit=1.0)), Target(precision="bf16")) == ("bf16",)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    files = [_model_file(tmp_path, "fp32"), _model_file(tmp_path, "int8", 0.5)]
    first = open_study(config, open_storage(url), "two", seed=0)
    models = study_latency_models(first, files, Target(), "resnet20_cifar", ("fp32", "int8"))
    assert [m.target.precision for m in models.models] == ["fp32", "int8"]
    # Another worker without the files gets both, each for its own target.
    again = study_latency_models(open_study(config, open_storage(url), "two", seed=1), [], Target(),
                                 "resnet20_cifar", ("fp32", "int8"))
    assert again.for_target(Target(precision="int8")).coefficients == models.models[1].coefficients
    assert again.for_target(Target(precision="fp16")) is None
    with pytest.raises(UserError, match="are both latency models of openvino/CPU/fp32"):
        study_latency_models(first, [files[0], files[0]], Target(), "resnet20_cifar", ("fp32", "int8"))
    with pytest.raises(UserError, match="a precision this search's trials never run at \\(fp32, bf16\\)"):
        study_latency_models(open_study(config, open_storage(url), "other", seed=0), files, Target(),
                             "resnet20_cifar", ("fp32", "bf16"))


def test_fidelity_sweep_over_precision_needs_a_model_of_each(settings, tmp_path):
    from click.testing import CliRunner

    from edgeprune.cli import cli

    sweep = tmp_path / "fidelity.yaml"
    sweep.write_text(_sweep(limit=1.0, extra="""  precision: {values: [fp32, int8]}
  edgeprune:
    value: {fidelity: {rapid: 100}}
"""))
    result = CliRunner().invoke(cli, ["sweep", str(sweep), "--trials", "1", "--out", str(tmp_path / "o"),
                                      "--schedule", str(RESNET20), "--model", "resnet20_cifar",
                                      "--latency-model", str(_model_file(tmp_path, "fp32")),
                                      "--no-baselines", *_data_args(settings)])
    # Refused before any trial, rather than pricing the INT8 trials with the fp32 profile.
    assert isinstance(result.exception, UserError) and "\n" not in str(result.exception)
    assert "not openvino/CPU/int8 for resnet20_cifar" in str(result.exception)
    assert "--precision int8 --out lm.json" in str(result.exception)
    assert not list((tmp_path / "o").glob("**/result.json"))
    # Nothing was stored: the same sweep with both models starts.
    assert LATENCY_MODELS_ATTR not in open_study(load_sweep(sweep), open_storage(tmp_path / "o"), "fidelity").user_attrs


def test_producer_gates_on_the_model_of_its_precision(settings, tmp_path):
    from click.testing import CliRunner

    from edgeprune.cli import cli

    fp32, int8 = _model_file(tmp_path, "fp32"), _model_file(tmp_path, "int8", 0.5)
    args = ["producer", "--schedule", str(RESNET20), "--model", "resnet20_cifar", "--precision", "int8",
            "--latency-limit", "0.000001", "--json", *_data_args(settings)]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "both"), "--latency-model", str(fp32),
                                      "--latency-model", str(int8)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "both" / "result.json").read_text())["metrics"]
    alone = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "int8"), "--latency-model", str(int8)],
                               catch_exceptions=False)
    assert alone.exit_code == 0, alone.output
    # Priced by the int8 model whether or not the fp32 one is given beside it.
    assert metrics[PREDICTED] == json.loads((tmp_path / "int8" / "result.json").read_text())["metrics"][PREDICTED]
    assert metrics[PREDICTED] > 0
    wrong = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "fp32"), "--latency-model", str(fp32)])
    assert isinstance(wrong.exception, UserError) and "not openvino/CPU/int8" in str(wrong.exception)
    assert not (tmp_path / "fp32").exists()


def test_sweep_gate_prices_each_precision_with_its_own_model(settings, tmp_path):
    models = LatencyModels(tuple(LatencyModel.from_json(_latency_model_json(precision=p, scale=k))
                                 for p, k in (("fp32", 1.0), ("int8", 0.5))))
    sweep = _sweep(limit=0.000001, extra="  precision: {values: [fp32, int8]}\n").replace(
        "method: random", "method: grid").replace("values: [0.3, 0.5]", "value: 0.3")
    *_, records, consumer = _gated_sweep(settings, tmp_path, models, 0.000001, 2, sweep)
    predicted = {r.params["precision"]: r.metrics[PREDICTED] for r in records}
    assert consumer.jobs == 0 and [r.status for r in records] == [TrialStatus.GATED] * 2
    assert predicted["int8"] == pytest.approx(predicted["fp32"] / 2, abs=1e-4)
