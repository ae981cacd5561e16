"""CIFAR ResNets: registry, checkpoint loading in every spelling, MAC counting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.errors import ModelError
from pipeline.models import (MODEL_NAMES, canonical_name, count_macs_params, create_model,
                             default_checkpoint, load_checkpoint)
from pipeline.settings import Settings


def expected_macs(depth: int, shortcut: str, num_classes: int = 10) -> int:
    """Distiller's MAC count of a CIFAR ResNet, derived from the architecture by hand."""
    n = (depth - 2) // 6
    macs = 32 * 32 * 16 * 3 * 9  # stem
    size, in_c = 32, 16
    for stage, planes in enumerate((16, 32, 64)):
        for block in range(n):
            if stage and block == 0:
                size //= 2
                if shortcut == "B":
                    macs += size * size * planes * in_c  # 1x1 downsample conv
            macs += size * size * planes * in_c * 9 + size * size * planes * planes * 9
            in_c = planes
    return macs + 64 * num_classes


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_every_model_builds_runs_and_counts_macs(name: str, shortcut: str) -> None:
    model = create_model(name, shortcut=shortcut).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    depth = int(name.removeprefix("resnet").removesuffix("_cifar"))
    assert count_macs_params(model)[0] == expected_macs(depth, shortcut)


def test_option_b_has_downsample_convs_option_a_has_none() -> None:
    names_b = {n for n, _ in create_model("resnet20_cifar", shortcut="B").named_parameters()}
    names_a = {n for n, _ in create_model("resnet20_cifar", shortcut="A").named_parameters()}
    assert {"layer2.0.downsample.0.weight", "layer3.0.downsample.1.weight"} <= names_b
    assert not any("downsample" in n for n in names_a)


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_pretrained_checkpoints_load(shared_dir: Path, depth: int) -> None:
    settings = Settings.load(env={}, shared_dir=shared_dir)
    path = default_checkpoint(f"resnet{depth}_cifar", settings)
    assert path is not None and path.name.startswith(f"resnet{depth}-")
    model = create_model(f"resnet{depth}_cifar")
    load_checkpoint(model, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.layer1[0].conv1.weight, raw["module.layer1.0.conv1.weight"])


def test_distiller_spellings_load(tmp_path: Path) -> None:
    source = create_model("resnet20_cifar", shortcut="B")
    state = {f"module.{k}".replace("linear.", "fc.").replace("downsample.", "shortcut."): v
             for k, v in source.state_dict().items()}
    path = tmp_path / "distiller.pth.tar"
    torch.save({"state_dict": state, "arch": "resnet20_cifar"}, path)
    target = create_model("resnet20_cifar", shortcut="B")
    load_checkpoint(target, path)
    assert torch.equal(target.linear.weight, source.linear.weight)
    assert torch.equal(target.layer2[0].downsample[0].weight, source.layer2[0].downsample[0].weight)


def test_checkpoint_of_other_model_is_one_clear_error(checkpoint_resnet20: Path) -> None:
    with pytest.raises(ModelError, match="does not fit the model.*--model"):
        load_checkpoint(create_model("resnet32_cifar"), checkpoint_resnet20)


def test_corrupt_and_missing_checkpoints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.th"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(create_model("resnet20_cifar"), bad)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(create_model("resnet20_cifar"), tmp_path / "nope.th")


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ModelError, match="resnet56_cifar"):
        create_model("resnet57_cifar")


def test_canonical_name_strips_only_the_dataparallel_prefix() -> None:
    assert canonical_name("module.layer1.0.conv1.weight") == "layer1.0.conv1.weight"
    assert canonical_name("layer1.0.conv1.weight") == "layer1.0.conv1.weight"
