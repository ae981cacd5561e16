"""``edgeprune schedule check|show`` through the real CLI entry point (exit codes, one-line errors)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgeprune.cli import main

HAND_PICKED = Path(__file__).resolve().parent.parent / "schedules" / "resnet56_filter_rank.yaml"

GOOD = """version: 1
pruners:
  p1: {class: L1RankedStructureParameterPruner, group_type: Filters, desired_sparsity: 0.5,
       weights: [module.layer1.0.conv1.weight]}
lr_schedulers:
  lr: {class: ExponentialLR, gamma: 0.95}
extensions:
  thin: {class: FilterRemover}
policies:
  - pruner: {instance_name: p1}
    epochs: [0]
  - lr_scheduler: {instance_name: lr}
    starting_epoch: 1
    ending_epoch: 5
"""

#: (name, how to break GOOD, fragment the one error line must hold)
MALFORMED = [
    ("unknown_pruner_class", ("L1RankedStructureParameterPruner", "BaiduRNNPruner"),
     "pruners.p1.class='BaiduRNNPruner' is not a supported pruner class: use one of"),
    ("unknown_lr_class", ("ExponentialLR", "CyclicLR"), "lr_schedulers.lr.class='CyclicLR'"),
    ("unknown_extension", ("FilterRemover", "NetThinner"), "extensions.thin.class='NetThinner'"),
    ("unknown_argument", ("group_type: Filters,", "group_type: Filters, noise: 0.1,"),
     "pruners.p1.noise: L1RankedStructureParameterPruner has no argument 'noise'"),
    ("missing_argument", ("desired_sparsity: 0.5,", ""), "needs the argument 'desired_sparsity'"),
    ("weight_not_in_model", ("layer1.0.conv1.weight", "layer1.0.cnv1.weight"),
     "pruners.p1.weights[0]='module.layer1.0.cnv1.weight' is not a weight of this model: did you mean"),
    ("sparsity_out_of_range", ("desired_sparsity: 0.5", "desired_sparsity: 1.5"),
     "pruners.p1.desired_sparsity=1.5 is outside [0.0, 1.0)"),
    ("negative_sparsity", ("desired_sparsity: 0.5", "desired_sparsity: -0.1"), "is outside [0.0, 1.0)"),
    ("bad_group_type", ("group_type: Filters", "group_type: Kernels"),
     "pruners.p1.group_type='Kernels' is not supported: use one of Filters, Channels"),
    ("policy_missing_instance", ("{instance_name: p1}", "{instance_name: p9}"),
     "policies[0].pruner.instance_name='p9' is not defined under pruners"),
    ("policy_without_epochs", ("    epochs: [0]\n", ""), "policies[0]: the policy has no epochs"),
    ("yaml_syntax", ("{class: FilterRemover}", "{class: FilterRemover"), "YAML syntax error"),
    ("wrong_type", ("gamma: 0.95", "gamma: fast"), "lr_schedulers.lr.gamma='fast' has the wrong type"),
    ("residual_on_option_a", ("layer1.0.conv1.weight", "layer1.0.conv2.weight"),
     "residual stream of this option-A"),
    ("not_a_conv", ("module.layer1.0.conv1.weight", "linear.weight"), "is not a convolution weight"),
    ("bad_range", ("ending_epoch: 5", "ending_epoch: 1"), "ending_epoch=1 is not after starting_epoch=1"),
    ("unsupported_section", ("version: 1\n", "version: 1\nregularizers: {}\n"), "regularizers are not supported"),
    ("wrong_version", ("version: 1", "version: 2"), "version=2"),
]


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``edgeprune ARGS`` in-process through the console entry point; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["edgeprune", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_good_schedule_checks_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    code, out, err = run_cli(monkeypatch, capsys, "schedule", "check", str(path), "--model", "resnet20_cifar")
    assert (code, err) == (0, "")
    assert out.startswith(f"OK: {path}: 1 pruners, 1 lr schedulers, 1 extensions, 2 policies")


@pytest.mark.parametrize("arch, expected", [("resnet20_cifar", "resnet20_cifar"), ("simplenet_mnist", "resnet56_cifar"),
                                            (None, "resnet56_cifar")])
def test_check_defaults_to_the_network_the_schedule_names(arch: str | None, expected: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Without --model, the schedule's net_thinner arch (when edgeprune has that network), else ResNet56."""
    path = tmp_path / "named.yaml"
    path.write_text(GOOD.replace("thin: {class: FilterRemover}", f"thin: {{class: FilterRemover, arch: {arch}}}"
                                 if arch else "thin: {class: FilterRemover}"))
    code, out, err = run_cli(monkeypatch, capsys, "schedule", "check", str(path))
    assert (code, err) == (0, "") and out.rstrip().endswith(f"valid for {expected} (shortcut A)")
    code, out, _ = run_cli(monkeypatch, capsys, "schedule", "show", str(path), "--json")
    assert code == 0 and json.loads(out)["model"] == expected


@pytest.mark.parametrize("name, edit, fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_schedule_is_one_error_line(name: str, edit: tuple[str, str], fragment: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    old, new = edit
    assert old in GOOD
    path = tmp_path / f"{name}.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    code, out, err = run_cli(monkeypatch, capsys, "schedule", "check", str(path), "--model", "resnet20_cifar")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"Error: {path}") and fragment in lines[0], lines[0]


def test_missing_file_and_bad_set_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "schedule", "check", str(tmp_path / "none.yaml"))
    assert code == 2 and "not found" in err
    code, _, err = run_cli(monkeypatch, capsys, "schedule", "check", str(HAND_PICKED),
                           "--set", "filter_pruner_70.desired_sparsity=2")
    assert code == 2 and "filter_pruner_70.desired_sparsity=2.0 is outside" in err


def test_show_prints_layers_and_totals_and_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "schedule", "show", str(HAND_PICKED), "--shortcut", "B",
                           "--set", "filter_pruner_20.desired_sparsity=0.5", "--json")
    assert code == 0
    report = json.loads(out)
    rows = {row["name"]: row for row in report["layers"]}
    assert len(rows) == 22
    assert (rows["layer3.1.conv1"]["channels_before"], rows["layer3.1.conv1"]["channels_after"]) == (64, 32)
    assert (rows["layer1.4.conv1"]["channels_before"], rows["layer1.4.conv1"]["channels_after"]) == (16, 5)
    assert report["macs_after"] < report["macs_before"] == 125_747_840
    code, out, _ = run_cli(monkeypatch, capsys, "schedule", "show", str(HAND_PICKED))
    assert code == 0
    assert "layer2.7.conv1" in out and "total MACs" in out and "total params" in out
    assert f"{report['macs_after']:,}" not in out  # option A differs from B (no downsample convs)
