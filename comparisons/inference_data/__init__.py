"""ArviZ ``InferenceData`` for every method, one converter per source (as ArviZ's
``data/io_*.py``), and checked PSIS-LOO.

    base           the common layout (GaussianDrawsConverter), dims, weight sites, input checks
    io_mc_dropout  from_mc_dropout
    io_svi         from_svi_guide
    io_nuts        from_nuts
    io_exact_gp    from_exact_gp
    io_module      from_module_guide (a converted network's Pyro predictive)
    loo            checked_loo, LOOReliabilityWarning
"""

from __future__ import annotations

from . import io_exact_gp, io_mc_dropout, io_module, io_nuts, io_svi, loo
from .base import CHAIN_DIM, DRAW_DIM, FEATURE_DIM, OBS_DIM, OUTPUT_DIM, weight_dims
from .io_exact_gp import *  # noqa: F401,F403
from .io_mc_dropout import *  # noqa: F401,F403
from .io_module import *  # noqa: F401,F403
from .io_nuts import *  # noqa: F401,F403
from .io_svi import *  # noqa: F401,F403
from .loo import *  # noqa: F401,F403

__all__ = [
    "CHAIN_DIM", "DRAW_DIM", "FEATURE_DIM", "OBS_DIM", "OUTPUT_DIM", "weight_dims",
    *io_mc_dropout.__all__, *io_svi.__all__, *io_nuts.__all__, *io_exact_gp.__all__,
    *io_module.__all__, *loo.__all__,
]
