"""The names of :mod:`comparisons.experiments.rotated_digit`, for type checkers and for lazy_loader (``__init__.py``
imports each module on first use)."""

from .experiment import (
    RotatedDigitResult,
    run,
)
from .pyro_path import (
    path_agreement,
    train_converted_lenet,
)
from .settings import (
    RotatedDigitSettings,
)
from .sweep import (
    DEFAULT_ANGLES_DEG,
    RotationSweep,
    rotate_image,
    rotated_digit_records,
    select_digit,
    sweep_rotations,
)

__all__ = [
    "DEFAULT_ANGLES_DEG",
    "RotatedDigitSettings",
    "RotatedDigitResult",
    "RotationSweep",
    "rotate_image",
    "select_digit",
    "sweep_rotations",
    "rotated_digit_records",
    "train_converted_lenet",
    "path_agreement",
    "run",
]
