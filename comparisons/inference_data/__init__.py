"""ArviZ ``InferenceData`` for every method (one converter per source) and checked PSIS-LOO."""

from __future__ import annotations

from .converters import (  # noqa: F401
    CHAIN_DIM,
    DRAW_DIM,
    FEATURE_DIM,
    OBS_DIM,
    OUTPUT_DIM,
    LOOReliabilityWarning,
    checked_loo,
    from_exact_gp,
    from_mc_dropout,
    from_nuts,
    from_svi_guide,
    weight_dims,
)

__all__ = [
    "CHAIN_DIM",
    "DRAW_DIM",
    "FEATURE_DIM",
    "OBS_DIM",
    "OUTPUT_DIM",
    "LOOReliabilityWarning",
    "checked_loo",
    "from_exact_gp",
    "from_mc_dropout",
    "from_nuts",
    "from_svi_guide",
    "weight_dims",
]
