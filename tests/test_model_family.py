"""The pretrained family as a search dimension: the ``model`` sweep parameter, one schedule for
every depth (``cross_depth``), the ResNet56 teacher for every student, and reports naming the base.

Accuracies here are on the lossless mini set (cifar-10-binary-mini.tar.gz)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeprune.cli import cli
from pipeline.errors import ScheduleError, SweepError
from pipeline.flow import RunConfig, produce
from pipeline.models import create_model, default_checkpoint, load_checkpoint
from pipeline.pruning import load_schedule, prune_one_shot, validate_schedule
from pipeline.pruning.depths import ABSENT_NOTE
from pipeline.report import build_report
from pipeline.schedule import Override
from pipeline.search.config import load_sweep
from pipeline.search.mapping import check_mapping, map_params
from pipeline.search.storage import load_trials
from pipeline.search.trials import run_config_for

REPO = Path(__file__).resolve().parent.parent
FAMILY = REPO / "schedules" / "resnet_cifar_depth_width.yaml"
RESNET56_ONLY = REPO / "schedules" / "resnet56_depth_width.yaml"
FAMILY_MODELS = ("resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar")
#: l1_bn2 ranks blocks without probing each one (sensitivity's two passes per block).
FAST_BLOCKS = ["block_pruner.criterion=l1_bn2"]


def _sweep(parameters: str, schedule: Path = FAMILY) -> str:
    return f"""
# Test sweep over the base model.
method: grid
metric: {{name: Top1, goal: maximize}}
parameters:
{parameters}
command: ["${{env}}", edgeprune, producer, --schedule, {schedule}, "${{args}}"]
"""


def test_every_family_member_has_its_pretrained_checkpoint(settings) -> None:
    for name in FAMILY_MODELS:
        path = default_checkpoint(name, settings)
        depth = name.removeprefix("resnet").removesuffix("_cifar")
        assert path is not None and path.name.startswith(f"resnet{depth}-"), name
        load_checkpoint(create_model(name), path)  # the weights fit the network


def test_model_parameter_sets_the_run_model_and_its_checkpoint(checkpoint_resnet56: Path) -> None:
    base = RunConfig(schedule=FAMILY, checkpoint=checkpoint_resnet56)
    config = run_config_for(base, {"model": "resnet32_cifar", "block_pruner_desired_sparsity": 0.5})
    assert config.model == "resnet32_cifar" and config.params["model"] == "resnet32_cifar"
    # Another network: its own pretrained checkpoint (default_checkpoint), not the base's.
    assert config.checkpoint is None
    assert config.overrides == [Override("block_pruner", "desired_sparsity", 0.5)]
    same = run_config_for(base, {"model": "resnet56_cifar"})
    assert same.model == "resnet56_cifar" and same.checkpoint == checkpoint_resnet56
    with pytest.raises(SweepError, match=r"model='resnet99_cifar' is not valid: use one of resnet20_cifar"):
        map_params({"model": "resnet99_cifar"}, FAMILY)


def test_check_mapping_checks_every_model_value_at_load_time() -> None:
    check_mapping(load_sweep(_sweep("  model: {values: [%s]}" % ", ".join(FAMILY_MODELS))).parameters, FAMILY)
    with pytest.raises(SweepError, match="model='resnet21_cifar' is not valid") as bad:
        check_mapping(load_sweep(_sweep("  model: {values: [resnet20_cifar, resnet21_cifar]}")).parameters,
                      FAMILY)
    assert "\n" not in str(bad.value)
    # A schedule written for ResNet56 alone names blocks ResNet20 lacks: refused before any trial.
    with pytest.raises(SweepError, match=r"model='resnet20_cifar' does not fit .*cross_depth: true"):
        check_mapping(load_sweep(_sweep("  model: {values: [resnet56_cifar, resnet20_cifar]}",
                                        RESNET56_ONLY)).parameters, RESNET56_ONLY)


@pytest.mark.parametrize("model, blocks_per_stage, removed", [("resnet20_cifar", 3, 2), ("resnet32_cifar", 5, 4)])
def test_cross_depth_schedule_prunes_a_shallower_model(model: str, blocks_per_stage: int, removed: int,
                                                       settings) -> None:
    schedule = load_schedule(FAMILY, FAST_BLOCKS)
    network = create_model(model)
    load_checkpoint(network, default_checkpoint(model, settings))
    validate_schedule(schedule, network)
    report = prune_one_shot(network, schedule)
    # floor(0.34 x the removable blocks the model has): 7 on ResNet20, 13 on ResNet32.
    assert len(report.blocks_removed) == removed
    absent = [line for line in report.pruners_skipped if line.endswith(ABSENT_NOTE)]
    assert {line.split(":")[0] for line in absent} == {
        "block_pruner", "filter_pruner_stage1", "filter_pruner_stage2", "filter_pruner_stage3"}
    skipped = " ".join(absent)
    assert f"module.layer1.{blocks_per_stage}," in skipped and "module.layer3.8.conv1.weight" in skipped
    assert f"module.layer1.{blocks_per_stage - 1}," not in skipped
    # The filter pruners pruned the blocks that remain.
    kept = [layer for layer in report.layers if layer.channels_after < layer.channels_before]
    assert kept and all(int(layer.name.split(".")[1]) < blocks_per_stage for layer in kept)
    assert report.macs_after < report.macs_before
    assert "blocks this model does not have" in report.table()


def test_cross_depth_still_refuses_a_typo_with_one_line() -> None:
    text = FAMILY.read_text()
    typos = [("module.layer1.8.conv1.weight", "module.layer1.8.conv3.weight"),  # no such tensor
             ("module.layer3.8]", "module.layer4.8]"),  # no such stage
             ("module.layer2.8.conv1.weight", "module.layer2.x8.conv1.weight")]
    for right, wrong in typos:
        assert right in text
        with pytest.raises(ScheduleError, match=wrong.rstrip("]")) as error:
            validate_schedule(load_schedule(text.replace(right, wrong)), create_model("resnet20_cifar"))
        assert "\n" not in str(error.value)
    # Without cross_depth every name must exist, as in Distiller.
    with pytest.raises(ScheduleError, match="layer1.3"):
        validate_schedule(load_schedule(RESNET56_ONLY), create_model("resnet20_cifar"))
    with pytest.raises(ScheduleError, match="cross_depth='yes' is not a boolean"):
        load_schedule(text.replace("cross_depth: true", "cross_depth: 'yes'"))


def test_cross_depth_round_trips_and_can_be_set() -> None:
    schedule = load_schedule(FAMILY)
    assert schedule.cross_depth and load_schedule(schedule.to_yaml()) == schedule
    strict = load_schedule(RESNET56_ONLY)
    assert not strict.cross_depth
    assert load_schedule(RESNET56_ONLY, ["cross_depth=true"]).cross_depth


@pytest.mark.slow
def test_a_resnet20_student_distils_from_the_resnet56_teacher(settings, tmp_path: Path) -> None:
    config = RunConfig(schedule=FAMILY, overrides=FAST_BLOCKS, model="resnet20_cifar", epochs=1,
                       max_steps_per_epoch=1, batch_size=16, kd_weight=0.7)
    produced = produce(config, settings, tmp_path)
    assert produced.metrics["model"] == "resnet20_cifar"
    assert produced.metrics["kd_teacher_model"] == "resnet56_cifar"
    assert list((settings.cache_dir / "teachers").glob("resnet56_cifar-*.pt"))


def test_producer_takes_the_model_wandb_passes(settings, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    # As `wandb agent` runs it: the sweep's command has --model resnet56_cifar, ${args} appends
    # --model=<value>; the last one given wins.
    result = CliRunner().invoke(cli, [
        "producer", "--schedule", str(FAMILY), "--model", "resnet56_cifar", "--eval-limit", "100",
        "--fast", "--out", str(out), "--data", str(settings.data), "--cache-dir", str(settings.cache_dir),
        "--torch-device", "cpu", "--json", "--model=resnet20_cifar", "--block_pruner_criterion=l1_bn2"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "ok" and record["model"] == "resnet20_cifar"
    assert record["metrics"]["model"] == "resnet20_cifar" and record["metrics"]["Total_Latency"] > 0


@pytest.mark.slow
def test_sweep_over_the_base_model_runs_and_its_report_names_the_model(settings, tmp_path: Path) -> None:
    sweep = tmp_path / "family.yaml"
    sweep.write_text(_sweep("  model: {values: [resnet20_cifar, resnet32_cifar]}\n"
                            "  block_pruner_criterion: {value: l1_bn2}\n  epochs: {value: 0}"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "sweep", str(sweep), "--out", str(out), "--eval-limit", "200", "--fast-measure", "--no-baselines",
        "--data", str(settings.data), "--cache-dir", str(settings.cache_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = load_trials(out)
    assert sorted(r.params["model"] for r in records) == ["resnet20_cifar", "resnet32_cifar"]
    for record in records:
        assert record.status == "ok", record.reason
        assert record.metrics["model"] == record.params["model"]
        assert json.loads(Path(record.run_dir, "result.json").read_text())["model"] == record.params["model"]
    # ResNet32 keeps more blocks than ResNet20 after the same schedule: more MACs.
    macs = {r.params["model"]: r.metrics["macs"] for r in records}
    assert macs["resnet32_cifar"] > macs["resnet20_cifar"]
    best = max(records, key=lambda r: r.metrics["Top1"])
    # The closing lines name the best trial's model (the sweep maximises Top1).
    assert f"trial {best.number}: {best.params['model']}, block_pruner_criterion=l1_bn2" in result.output
    paths = build_report(records, tmp_path / "report")
    report = json.loads(paths.json.read_text())
    assert {p["model"] for p in report["pareto"]["points"]} == {"resnet20_cifar", "resnet32_cifar"}
    assert report["best"]["model"] == best.params["model"]
    assert report["best"]["headline"].startswith(f"best: {best.params['model']}, ")
    front = [p for p in report["pareto"]["points"] if p["on_front"]]
    page = paths.html.read_text()
    # The page's answer (the report's rule here: no stored objective) is the best trial, with its model.
    answer = page[page.index("Answer"):page.index("Trials")]
    assert all(p["model"] in page for p in front)
    assert f"#{best.number}" in answer and best.params["model"] in answer
