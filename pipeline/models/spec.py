"""What the pipeline needs to know about a network besides its modules: the seed of issue 34's model spec.

A ``ModelSpec`` is plain data (no code, no tensors), so it can later travel in a job, a result or
a study unchanged. ``pipeline.models.registry.model_spec(name)`` returns the spec of a built-in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: The ImageNet statistics the CIFAR ResNets' checkpoints were trained with (akamaster's trainer).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """The input a network takes: ``shape`` (channels, height, width) and how 8-bit pixels are scaled.

    With ``mean`` and ``std`` (one value per channel) a pixel ``p`` becomes ``(p / 255 - mean) / std``;
    with both None the network takes the raw pixel values 0-255 as floats (MLPerf Tiny's ResNet-8).
    """

    shape: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"input shape must be (channels, height, width) >= 1, got {self.shape}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither for raw 0-255 pixels")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != self.shape[0] or len(self.std) != self.shape[0]:
                raise ValueError(f"mean and std need one value per channel ({self.shape[0]})")
            if min(self.std) <= 0:
                raise ValueError(f"std must be positive, got {self.std}")

    @property
    def raw_pixels(self) -> bool:
        """True when the network takes pixels in 0-255 without normalisation."""
        return self.mean is None

    def scale(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC images -> float32 NCHW input for the network, scaled as this spec says."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.hwc:
            raise ValueError(f"expected uint8 images of shape (N, {', '.join(map(str, self.hwc))}), "
                             f"got {images.dtype} {images.shape}")
        batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.mean is None or self.std is None:
            return batch
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1) * 255.0
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1) * 255.0
        return (batch - mean) / std

    @property
    def hwc(self) -> tuple[int, int, int]:
        """The shape of one image as decoded (height, width, channels)."""
        channels, height, width = self.shape
        return height, width, channels

    def example(self, batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
        """A zero input batch of this shape, for tracing and MAC counting."""
        return torch.zeros(batch, *self.shape, device=device)


@dataclass(frozen=True)
class ModelSpec:
    """A built-in network: its name, input, classes and the file name of its pretrained weights."""

    name: str
    input: InputSpec
    num_classes: int
    #: Glob for the pretrained checkpoint in the models folder (``resnet20-*.th``).
    checkpoint_glob: str
    #: Where the architecture and weights come from, in one line (for reports and docs).
    source: str
