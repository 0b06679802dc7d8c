"""Covariance functions of infinitely wide networks, as GPyTorch kernels: the arc-cosine kernel,
the deep NNGP kernel and random features, on one shared weight/bias-variance base."""

from __future__ import annotations

from . import arc_cosine, base, nngp, random_features
from .arc_cosine import *  # noqa: F401,F403
from .base import *  # noqa: F401,F403
from .nngp import *  # noqa: F401,F403
from .random_features import *  # noqa: F401,F403

__all__ = [*arc_cosine.__all__, *base.__all__, *nngp.__all__, *random_features.__all__]
