r"""The settings the toy pitfall experiments share, their constants and the tidy record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = ["DATASET", "DEFAULT_HMC", "LEARNED_RATE_METHODS", "LearnedRateFitWarning", "PitfallHMCSettings",
           "PitfallSettings", "record"]

DATASET = "toy1d"

#: method ids of the learned-rate curves of the non-concentration experiment
LEARNED_RATE_METHODS = ("concrete_dropout", "full_elbo")
#: Adam step size of the learned-rate fits (means, keep_prob logits, log theta and log tau alike)
LEARNED_RATE_LR = 1e-2
#: Concrete temperature of the learned-rate fits (Gal, Hron & Kendall 2017)
LEARNED_RATE_TEMPERATURE = 0.1
#: initial keep_prob of the input and of the hidden layer
LEARNED_RATE_INITIAL_KEEP_PROB = 0.9
#: initial tau of the learned-rate fits (standardised scale)
LEARNED_RATE_INITIAL_TAU = 1.0
#: concrete_dropout's FIXED theta: the theta -> 0 limit, numerically (its jitter noise adds at
#: most theta^2 (||h||^2 + 1) to a variance, below 1e-9 here: negligible)
CONCRETE_THETA = 1e-6
#: full_elbo's initial theta
FULL_ELBO_INITIAL_THETA = 1e-2
#: the learned-rate fits draw from ``torch.Generator().manual_seed(1000 seed + 700 + k)`` (k = 0,
#: 1 for the two methods) and their test samples from that seed + 1: streams of their own, apart
#: from the other methods'
LEARNED_RATE_SEED_OFFSET = 700


class LearnedRateFitWarning(UserWarning):
    """A learned-rate fit of the non-concentration experiment failed (a keep_prob ran to a bound,
    a parameter became NaN): its records are left out, the other methods' are kept."""


@dataclass(frozen=True)
class PitfallHMCSettings:
    """NUTS settings of the HMC curve of :func:`non_concentration_records`.

    Attributes:
        max_train: run HMC only for training-set sizes :math:`N \\le` ``max_train`` (every
            NUTS iteration costs up to ``2^max_tree_depth - 1`` gradients of an
            :math:`O(N)` potential).
        chains, warmup, samples: NUTS chains, warmup and kept iterations per chain.
        processes: worker processes for the chains (1: in this process; > 1 needs an
            ``if __name__ == "__main__":`` guard in a calling script).
        max_tree_depth: NUTS maximum tree depth.
        target_accept_prob: NUTS target acceptance.
    """

    max_train: int = 300
    chains: int = 4
    warmup: int = 300
    samples: int = 300
    processes: int = 2
    max_tree_depth: int = 10
    target_accept_prob: float = 0.8

    def __post_init__(self):
        for name in ("max_train", "chains", "samples", "processes", "max_tree_depth"):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if not 0 < float(self.target_accept_prob) < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got "
                             f"{self.target_accept_prob!r}")


@dataclass(frozen=True)
class PitfallSettings:
    """Settings of :func:`run`: the network, prior and training settings shared by the toy
    pitfall experiments, and the plan of the non-concentration experiment.

    Attributes:
        hidden: hidden units of the one-hidden-layer ReLU network (and of the GP's prior).
        prior_length_scale: :math:`l` of the prior :math:`\\mathcal{N}(0, l^{-2})`.
        steps: Adam steps per network (epochs are ``ceil(steps / minibatches per epoch)``).
        batch_size: minibatch size.
        num_samples: MC dropout samples :math:`T`.
        seed: seed of the data, the networks and the masks.
        sizes: training-set sizes :math:`N` of the non-concentration experiment.
        keep_prob: the non-concentration experiment's fixed keep probability.
        hmc: :class:`PitfallHMCSettings` of its HMC curve, ``None``: no HMC.
        learned_rates: the learned-rate curves (``concrete_dropout``, ``full_elbo``; ``steps``
            full-batch Adam steps each) of :func:`learned_rate_records`.

    The last four are left out of the ``repr`` (the report states them on their own lines).

    Example:
        >>> PitfallSettings(steps=50, sizes=(10, 40), hmc=None).sizes
        (10, 40)
    """

    hidden: int = 50
    prior_length_scale: float = 1.0
    steps: int = 4000
    batch_size: int = 128
    num_samples: int = 1000
    seed: int = 0
    sizes: tuple[int, ...] = field(default=(10, 30, 100, 300, 1000, 3000, 10000), repr=False)
    keep_prob: float = field(default=0.9, repr=False)
    hmc: PitfallHMCSettings | None = field(default=PitfallHMCSettings(), repr=False)
    learned_rates: bool = field(default=True, repr=False)

    def __post_init__(self):
        for name in ("hidden", "steps", "batch_size", "num_samples"):
            check_positive_int(getattr(self, name), name)
        check_positive(self.prior_length_scale, "prior_length_scale")
        sizes = tuple(check_positive_int(n, f"sizes[{i}]") for i, n in enumerate(self.sizes))
        if not sizes:
            raise ValueError("sizes must hold at least one training-set size, got ()")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "keep_prob", check_keep_prob(self.keep_prob))
        if self.hmc is not None and not isinstance(self.hmc, PitfallHMCSettings):
            raise ValueError(f"hmc must be a PitfallHMCSettings or None, got "
                             f"{type(self.hmc).__name__}")
        if not isinstance(self.learned_rates, bool):
            raise ValueError(f"learned_rates must be True or False, got {self.learned_rates!r}")


def record(method, split, metric, value) -> dict:
    value = float(value)
    if not math.isfinite(value):
        raise RuntimeError(f"pitfalls: {method} at {split}: metric {metric} is not finite ({value})")
    return {"dataset": DATASET, "method": method, "split": split, "metric": metric, "value": value}


#: the default HMC settings of the non-concentration experiment (one frozen instance)
DEFAULT_HMC = PitfallHMCSettings()
