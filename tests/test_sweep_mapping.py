"""Sweep parameters onto the base schedule: overrides, run settings, load-time checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import SweepError
from pipeline.flow import RunConfig
from pipeline.pruning import load_schedule
from pipeline.schedule import Override, parse_override
from pipeline.search.config import load_sweep
from pipeline.search.mapping import check_mapping, map_params
from pipeline.search.trials import run_config_for

REPO = Path(__file__).resolve().parent.parent
RESNET56 = REPO / "schedules" / "resnet56_filter_rank.yaml"


def test_map_params_rewrites_the_right_schedule_keys():
    params = {"filter_pruner_70_desired_sparsity": "0.35", "filter_pruner_20_group_type": "Filters",
              "filter_pruner_60_round_to": 8, "epochs": "2", "lr": 0.05, "precision": "int8",
              "edgeprune": "{'metrics': []}"}
    mapped = map_params(params, RESNET56)
    assert mapped.overrides == [Override("filter_pruner_70", "desired_sparsity", 0.35),
                                Override("filter_pruner_20", "group_type", "Filters"),
                                Override("filter_pruner_60", "round_to", 8)]
    assert mapped.run_settings == {"epochs": 2, "lr": 0.05, "precision": "int8"}
    assert "edgeprune" not in mapped.params
    schedule = load_schedule(RESNET56, mapped.overrides)
    # The CLI spelling round-trips through the one parser.
    assert [parse_override(text) for text in mapped.override_strings()] == mapped.overrides
    base = load_schedule(RESNET56)
    assert schedule.pruners["filter_pruner_70"].args["desired_sparsity"] == 0.35
    assert schedule.pruners["filter_pruner_60"].args["round_to"] == 8
    # Untouched instances keep the base's values.
    assert schedule.pruners["filter_pruner_40"].args == base.pruners["filter_pruner_40"].args


def test_longest_instance_name_wins():
    pruner = {"class": "L1RankedStructureParameterPruner", "group_type": "Filters", "desired_sparsity": 0.5,
              "weights": ["layer1.0.conv1.weight"]}
    schedule = {"pruners": {"p": pruner, "p_desired": pruner},
                "policies": [{"pruner": {"instance_name": name}, "epochs": [0]} for name in ("p", "p_desired")]}
    assert map_params({"p_desired_weights": ["x"]}, schedule).overrides == [Override("p_desired", "weights", ["x"])]
    assert map_params({"p_group_type": "Channels"}, schedule).overrides == [Override("p", "group_type", "Channels")]


def test_run_config_for_applies_params():
    base = RunConfig(schedule=RESNET56, epochs=0, lr=0.01)
    config = run_config_for(base, {"filter_pruner_40_desired_sparsity": 0.5, "precision": "int8",
                                   "epochs": 3, "round_to": 4})
    assert config.epochs == 3 and config.lr == 0.01 and config.target.precision == "int8"
    assert config.overrides == [Override("filter_pruner_40", "desired_sparsity", 0.5), Override(None, "round_to", 4)]
    assert base.target.precision == "fp32"  # the base is not changed


def test_parameter_that_maps_to_nothing_is_an_error():
    with pytest.raises(SweepError, match="filter_prunr_70_desired_sparsity maps to nothing"):
        map_params({"filter_prunr_70_desired_sparsity": 0.5}, RESNET56)


def test_bad_run_setting_is_an_error():
    with pytest.raises(SweepError, match="precision='int4' is not valid"):
        map_params({"precision": "int4"}, RESNET56)
    with pytest.raises(SweepError, match="epochs=1.5 is not valid"):
        map_params({"epochs": 1.5}, RESNET56)


@pytest.mark.parametrize("parameter, message", [
    ("filter_pruner_70_desired_sparsty: {min: 0.1, max: 0.5}",
     "filter_pruner_70_desired_sparsty=0.1 does not fit"),  # misspelt key
    ("filter_pruner_70_desired_sparsity: {min: 0.1, max: 1.5}",
     "desired_sparsity=1.5 does not fit"),  # a range end the schedule cannot take
])
def test_check_mapping_rejects_at_load_time(parameter, message):
    config = load_sweep(f"""
method: random
metric: {{name: Latency}}
parameters:
  {parameter}
""")
    with pytest.raises(SweepError, match=message):
        check_mapping(config.parameters, RESNET56)


def test_unset_base_key_must_be_set_by_the_sweep(tmp_path):
    text = RESNET56.read_text().replace("desired_sparsity: 0.7", "desired_sparsity: null", 1)
    schedule = tmp_path / "holes.yaml"
    schedule.write_text(text)
    config = load_sweep("""
method: random
metric: {name: Latency}
parameters:
  filter_pruner_60_desired_sparsity: {min: 0.1, max: 0.5}
""")
    with pytest.raises(SweepError, match="filter_pruner_70.desired_sparsity has no value"):
        check_mapping(config.parameters, schedule)
    config = load_sweep("""
method: random
metric: {name: Latency}
parameters:
  filter_pruner_70_desired_sparsity: {min: 0.1, max: 0.5}
""")
    check_mapping(config.parameters, schedule)


def test_repo_sweeps_map_onto_their_schedule():
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        config = load_sweep(path)
        check_mapping(config.parameters, REPO / config.command_option("--schedule"))
