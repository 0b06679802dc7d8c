"""ArviZ ``DataTree`` for every method, one converter per source (as ArviZ's
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

from comparisons.inference_data.base import (
    CHAIN_DIM,
    DRAW_DIM,
    FEATURE_DIM,
    OBS_DIM,
    OUTPUT_DIM,
    weight_dims,
)
from comparisons.inference_data.io_exact_gp import (
    from_exact_gp,
)
from comparisons.inference_data.io_mc_dropout import (
    from_mc_dropout,
)
from comparisons.inference_data.io_module import (
    from_module_guide,
    model_attrs,
)
from comparisons.inference_data.io_nuts import (
    from_nuts,
)
from comparisons.inference_data.io_svi import (
    from_svi_guide,
)
from comparisons.inference_data.loo import (
    LOOReliabilityWarning,
    checked_loo,
)

__all__ = [
    "CHAIN_DIM",
    "DRAW_DIM",
    "FEATURE_DIM",
    "OBS_DIM",
    "OUTPUT_DIM",
    "weight_dims",
    "from_mc_dropout",
    "from_svi_guide",
    "from_nuts",
    "from_exact_gp",
    "from_module_guide",
    "model_attrs",
    "LOOReliabilityWarning",
    "checked_loo",
]
