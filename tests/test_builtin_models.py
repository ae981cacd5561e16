"""The built-ins beyond the CIFAR ResNets: MLPerf Tiny's ResNet-8 and ShuffleNetV2 x0.5 for CIFAR-10.

Checked against their pretrained weights on the mini lossless test split (1,000 images), and
ResNet-8 against the benchmark's own float ``.tflite`` run by OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import ModelError
from pipeline.export import export_onnx
from pipeline.measure.facts import onnx_facts
from pipeline.models import (BUILTIN_NAMES, MODEL_NAMES, count_macs_params, create_model, default_checkpoint,
                             deployed_params, load_checkpoint, model_spec)
from pipeline.data import load_data
from pipeline.models.crosscheck import openvino_outputs, torch_predictions
from pipeline.models.resnet8_tiny import same_padding
from pipeline.models.shufflenetv2_cifar import channel_shuffle
from pipeline.settings import Settings

NEW_BUILTINS = ("resnet8_tiny", "shufflenetv2_x0_5_cifar")
#: Pretrained Top1 on the 1,000 mini test images is about 87% (ResNet-8) and 90% (ShuffleNetV2);
#: a definition that gets padding, eps or a branch wrong lands far below or near chance.
MIN_MINI_TOP1 = {"resnet8_tiny": 84.0, "shufflenetv2_x0_5_cifar": 87.0}


@pytest.fixture(scope="module")
def mini_test(mini_data: Path, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 1,000 images of the lossless mini test split (uint8 NHWC) and their labels."""
    test = load_data(mini_data, cache_dir).test
    return test.images, test.labels


@pytest.fixture(scope="module")
def models_settings(shared_dir: Path) -> Settings:
    return Settings.load(env={}, shared_dir=shared_dir)


def pretrained(name: str, settings: Settings) -> torch.nn.Module:
    path = default_checkpoint(name, settings)
    assert path is not None
    model = create_model(name)
    load_checkpoint(model, path)
    return model.eval()


@pytest.mark.parametrize("name", NEW_BUILTINS)
def test_checkpoint_loads_strictly(name: str, models_settings: Settings) -> None:
    path = default_checkpoint(name, models_settings)
    assert path is not None and path.match(model_spec(name).checkpoint_glob)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(name)
    model.load_state_dict(state, strict=True)  # every tensor, same names and shapes
    via_pipeline = pretrained(name, models_settings)
    for key, tensor in state.items():
        assert torch.equal(via_pipeline.state_dict()[key], tensor), key


def test_a_checkpoint_of_another_network_is_refused(models_settings: Settings) -> None:
    path = default_checkpoint("resnet8_tiny", models_settings)
    assert path is not None
    with pytest.raises(ModelError, match="does not fit the model"):
        load_checkpoint(create_model("shufflenetv2_x0_5_cifar"), path)


@pytest.mark.parametrize("name", NEW_BUILTINS)
def test_pretrained_top1_on_the_mini_test_split(name: str, models_settings: Settings,
                                                mini_test: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mini_test
    predictions = torch_predictions(pretrained(name, models_settings), model_spec(name).input, images)
    top1 = 100.0 * float((predictions == labels).mean())
    assert MIN_MINI_TOP1[name] <= top1 <= 95.0


def test_resnet8_onnx_and_mlperf_tflite_agree_on_openvino(tmp_path: Path, models_settings: Settings,
                                                          shared_dir: Path,
                                                          mini_test: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mini_test
    spec = model_spec("resnet8_tiny").input
    onnx_path = tmp_path / "resnet8.onnx"
    report = export_onnx(pretrained("resnet8_tiny", models_settings), onnx_path,
                         check_images=spec.scale(images[:64]))
    assert report.argmax_agreement == 1.0
    # Its convolutions have biases, so BatchNorm folding adds none: 78,186 less 2 x 240 BN parameters.
    assert deployed_params(pretrained("resnet8_tiny", models_settings)) == onnx_facts(onnx_path).params == 77706
    logits = openvino_outputs(onnx_path, images, spec)
    reference = openvino_outputs(shared_dir / "models" / "mlperf-tiny-resnet8.tflite", images)  # softmax
    assert float((logits.argmax(1) == reference.argmax(1)).mean()) >= 0.999
    assert float((reference.argmax(1) == labels).mean()) > 0.84  # the reference ran on the right input
    # Closer than the predictions: symmetric padding changes 38% of them, but BatchNorm eps 1e-5
    # instead of Keras' 1e-3 only one in 1,000, while it moves a probability by ~1e-2 (here ~3e-6).
    probabilities = torch.softmax(torch.from_numpy(logits), 1).numpy()
    assert float(np.abs(probabilities - reference).max()) < 1e-4


def test_specs_say_what_each_network_takes() -> None:
    assert set(MODEL_NAMES) < set(BUILTIN_NAMES) and set(NEW_BUILTINS) <= set(BUILTIN_NAMES)
    resnet20 = model_spec("resnet20_cifar")
    assert resnet20.input.mean == (0.485, 0.456, 0.406) and resnet20.input.std == (0.229, 0.224, 0.225)
    assert model_spec("resnet8_tiny").input.raw_pixels
    assert not model_spec("shufflenetv2_x0_5_cifar").input.raw_pixels
    for name in BUILTIN_NAMES:
        spec = model_spec(name)
        assert spec.input.shape == (3, 32, 32) and spec.num_classes == 10 and spec.name == name


def test_input_scaling_per_spec() -> None:
    pixel = np.full((1, 32, 32, 3), (255, 0, 51), dtype=np.uint8)
    raw = model_spec("resnet8_tiny").input.scale(pixel)
    assert raw.shape == (1, 3, 32, 32) and raw[0, :, 0, 0].tolist() == [255.0, 0.0, 51.0]
    scaled = model_spec("resnet20_cifar").input.scale(pixel)[0, :, 0, 0]
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert scaled.tolist() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="expected uint8 images"):
        model_spec("resnet8_tiny").input.scale(pixel.astype(np.float32))


def test_tensorflow_same_padding_puts_the_odd_pixel_after() -> None:
    assert same_padding(32, 3, 1) == (1, 1)
    assert same_padding(32, 3, 2) == (0, 1)  # asymmetric: the extra row/column at the bottom/right
    assert same_padding(31, 3, 2) == (1, 1)
    assert same_padding(32, 1, 2) == (0, 0)


def test_channel_shuffle_interleaves_the_two_halves() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_resnet8_size_and_macs() -> None:
    model = create_model("resnet8_tiny")
    assert sum(p.numel() for p in model.parameters()) == 78186  # the benchmark's count
    stem, stack1 = 32 * 32 * 16 * 3 * 9, 2 * 32 * 32 * 16 * 16 * 9
    stack2 = 16 * 16 * 32 * (16 * 9 + 32 * 9 + 16)  # two 3x3 convs and the 1x1 shortcut
    stack3 = 8 * 8 * 64 * (32 * 9 + 64 * 9 + 32)
    assert count_macs_params(model)[0] == stem + stack1 + stack2 + stack3 + 64 * 10


def test_shufflenet_size_and_output() -> None:
    model = create_model("shufflenetv2_x0_5_cifar", num_classes=7).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert sum(p.numel() for p in create_model("shufflenetv2_x0_5_cifar").parameters()) == 352042


def test_shortcut_option_is_refused_outside_the_cifar_resnets() -> None:
    with pytest.raises(ModelError, match="--shortcut applies to the CIFAR ResNets only"):
        create_model("resnet8_tiny", shortcut="B")
    with pytest.raises(ModelError, match="unknown model 'resnet9'.*resnet8_tiny"):
        model_spec("resnet9")


def test_shufflenet_exports_and_openvino_agrees_with_torch(tmp_path: Path, models_settings: Settings,
                                                          mini_test: tuple[np.ndarray, np.ndarray]) -> None:
    images = mini_test[0][:200]
    spec = model_spec("shufflenetv2_x0_5_cifar").input
    model = pretrained("shufflenetv2_x0_5_cifar", models_settings)
    report = export_onnx(model, tmp_path / "shufflenet.onnx", check_images=spec.scale(images[:64]))
    assert report.argmax_agreement == 1.0
    ours = openvino_outputs(tmp_path / "shufflenet.onnx", images, spec).argmax(1)
    assert float((ours == torch_predictions(model, spec, images)).mean()) >= 0.99
