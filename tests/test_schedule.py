"""Reading, validating, rewriting and writing back Distiller compression schedules."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ScheduleError
from pipeline.models import create_model
from pipeline.pruning import load_schedule, schedule_from_data, validate_schedule
from pipeline.schedule import Override, Policy, parse_override

HAND_PICKED = Path(__file__).resolve().parent.parent / "schedules" / "resnet56_filter_rank.yaml"

SMALL = """
version: 1
pruners:
  p1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [module.layer1.0.conv1.weight]
lr_schedulers:
  lr:
    class: StepLR
    step_size: 2
policies:
  - pruner:
      instance_name: p1
    epochs: [0]
  - frequency: 2
    starting_epoch: 1
    ending_epoch: 7
    lr_scheduler:
      instance_name: lr
"""


def test_hand_picked_schedule_reads_as_distiller_wrote_it() -> None:
    schedule = load_schedule(HAND_PICKED)
    assert schedule.source == str(HAND_PICKED)
    assert {n: s.args["desired_sparsity"] for n, s in schedule.pruners.items()} == {
        "filter_pruner_70": 0.7, "filter_pruner_60": 0.6, "filter_pruner_20": 0.2, "filter_pruner_40": 0.4}
    assert len(schedule.pruners["filter_pruner_70"].args["weights"]) == 9
    assert schedule.extensions["net_thinner"].class_name == "FilterRemover"
    lr_policy = next(p for p in schedule.policies if p.kind == "lr_scheduler")
    assert lr_policy.epochs == tuple(range(10, 300))
    assert all(p.epochs == (0,) for p in schedule.policies if p.kind != "lr_scheduler")


def test_round_trip_through_yaml_is_identical() -> None:
    for schedule in (load_schedule(HAND_PICKED), load_schedule(SMALL)):
        text = schedule.to_yaml()
        again = load_schedule(text)
        assert again == schedule
        assert again.to_yaml().splitlines()[1:] == text.splitlines()[1:]
    assert "epochs: [0]" in load_schedule(HAND_PICKED).to_yaml()


def test_policy_range_excludes_the_ending_epoch() -> None:
    policy = load_schedule(SMALL).policies[1]
    assert policy.epochs == (1, 3, 5)
    assert [e for e in range(10) if policy.fires_at(e)] == [1, 3, 5]
    assert policy.epochs_in(range(4)) == [1, 3]
    listed = Policy("pruner", "p", listed_epochs=(4, 0))
    assert listed.epochs == (0, 4) and listed.fires_at(4) and not listed.fires_at(2)


def test_overrides_rewrite_arguments_policies_and_global_round_to() -> None:
    base = load_schedule(SMALL)
    changed = load_schedule(SMALL, ["p1.desired_sparsity=0.25", "p1.group_type=Channels",
                                    "lr.step_size=3", "round_to=8", "p1.epochs=[0, 2]"])
    assert changed.pruners["p1"].args == {**base.pruners["p1"].args, "desired_sparsity": 0.25,
                                          "group_type": "Channels"}
    assert changed.lr_schedulers["lr"].args["step_size"] == 3
    assert changed.round_to == 8
    assert changed.policies[0].epochs == (0, 2)
    assert load_schedule(changed.to_yaml()) == changed
    # A mapping (a sweep's parameters) works the same; string values are read as YAML.
    assert load_schedule(SMALL, {"p1.desired_sparsity": "0.25"}).pruners["p1"].args["desired_sparsity"] == 0.25
    assert base.pruners["p1"].args["desired_sparsity"] == 0.5, "overrides must not change the original"


def test_structured_overrides_are_the_text_ones_parsed() -> None:
    texts = ["p1.desired_sparsity=0.25", "p1.weights=[layer1.0.conv1.weight]", "round_to=8", "lr.epochs=[1]"]
    edits = [Override("p1", "desired_sparsity", 0.25), Override("p1", "weights", ["layer1.0.conv1.weight"]),
             Override(None, "round_to", 8), Override("lr", "epochs", [1])]
    assert [parse_override(text) for text in texts] == edits
    assert [str(edit) for edit in edits] == texts
    assert load_schedule(SMALL, edits) == load_schedule(SMALL, texts)


def test_a_partial_schedule_keeps_null_arguments_as_holes() -> None:
    holes = SMALL.replace("desired_sparsity: 0.5", "desired_sparsity: null")
    with pytest.raises(ScheduleError, match=r"pruners\.p1\.desired_sparsity=None has the wrong type"):
        load_schedule(holes)
    base = load_schedule(holes, partial=True)
    assert base.unset_keys() == [("p1", "desired_sparsity")]
    filled = load_schedule(holes, [Override("p1", "desired_sparsity", 0.3)])
    assert filled.pruners["p1"].args["desired_sparsity"] == 0.3 and filled.unset_keys() == []


@pytest.mark.parametrize("override, fragment", [
    ("nope.desired_sparsity=0.5", "no instance 'nope'"),
    ("p1.sparsity=0.5", "has no key 'sparsity'"),
    ("p1.desired_sparsity=1.0", "pruners.p1.desired_sparsity=1.0 is outside [0.0, 1.0)"),
    ("p1.desired_sparsity=high", "has the wrong type"),
    ("p1.group_type=Rows", "group_type='Rows' is not supported"),
    ("justtext", "write <instance>.<key>=<value>"),
])
def test_bad_overrides_are_one_line_errors(override: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        load_schedule(SMALL, [override])
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_weight_names_are_checked_against_the_model_with_a_suggestion() -> None:
    model = create_model("resnet20_cifar")
    validate_schedule(load_schedule(SMALL), model)  # with module. prefix: fine
    bad = load_schedule(SMALL, ["p1.weights=[module.layer1.0.conv1.weigth]"])
    with pytest.raises(ScheduleError, match=r"pruners\.p1\.weights\[0\]=.*did you mean 'layer1.0.conv1.weight'"):
        validate_schedule(bad, model)
    deep = load_schedule(SMALL, ["p1.weights=[layer3.5.conv1.weight]"])
    validate_schedule(deep, create_model("resnet56_cifar"))
    with pytest.raises(ScheduleError, match="is not a weight of this model"):
        validate_schedule(deep, model)


def test_unsupported_class_names_the_supported_ones() -> None:
    with pytest.raises(ScheduleError) as caught:
        load_schedule(SMALL.replace("L1RankedStructureParameterPruner", "ActivationAPoZRankedFilterPruner"))
    assert "L1RankedStructureParameterPruner" in str(caught.value)
    assert "L2RankedStructureParameterPruner" in str(caught.value)


def test_parse_rejects_non_mapping_and_names_yaml_line() -> None:
    with pytest.raises(ScheduleError, match="a schedule is a YAML mapping"):
        schedule_from_data(["version", 1])
    with pytest.raises(ScheduleError, match=r"<schedule text>:3: YAML syntax error \(mapping values"):
        load_schedule("version: 1\npolicies:\n  - pruner: p1: x\n")
