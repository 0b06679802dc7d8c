"""Reference posteriors: NUTS on the Bayesian MLP, with convergence diagnostics."""

from __future__ import annotations

from comparisons.reference.nuts import (
    DEFAULT_ESS_PER_CHAIN,
    DEFAULT_MIN_BFMI,
    DEFAULT_R_HAT_MAX,
    HMCDiagnosticsWarning,
    NUTSResult,
    RecordingNUTS,
    bnn_potential,
    hmc_summary,
    jit_potential,
    nuts_cache_key,
    run_nuts,
)

__all__ = [
    "DEFAULT_ESS_PER_CHAIN",
    "DEFAULT_MIN_BFMI",
    "DEFAULT_R_HAT_MAX",
    "HMCDiagnosticsWarning",
    "NUTSResult",
    "RecordingNUTS",
    "bnn_potential",
    "hmc_summary",
    "jit_potential",
    "nuts_cache_key",
    "run_nuts",
]
