"""INT8 post-training quantization of an OpenVINO model with NNCF."""

from __future__ import annotations

import contextlib
import logging
import sys

import numpy as np

from ..errors import BenchmarkError
from ..extras import require

log = logging.getLogger(__name__)

#: Calibration images NNCF sees by default (the issue's figure: 300 train images).
DEFAULT_CALIBRATION_SIZE = 300


def quantize_int8(model, calibration_images: np.ndarray | None,
                  subset_size: int = DEFAULT_CALIBRATION_SIZE):
    """An INT8 copy of OpenVINO ``model`` (batch 1 input) calibrated on normalised NCHW images.

    Calibration images must come from the train split, never the split accuracy is measured on.
    """
    if calibration_images is None or len(calibration_images) == 0:
        raise BenchmarkError("precision int8 needs calibration images: pass a data set "
                             "(--data) so that train images can calibrate the quantizer")
    nncf = require("nncf")

    images = np.ascontiguousarray(calibration_images[:subset_size], dtype=np.float32)
    dataset = nncf.Dataset(list(images), lambda image: image[None])
    log.info("quantizing to INT8 with %d calibration images", len(images))
    # NNCF draws its progress bars on stdout, which --json keeps for the one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(model, dataset, subset_size=len(images))
