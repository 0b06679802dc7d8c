r"""The known pitfalls of MC dropout as approximate inference, each as a reproducible experiment.

1. **Improper KL** (Hron, Matthews & Ghahramani 2018). The exact variational family
   :math:`q_\theta(\mathbf{W})` (a mixture of two Gaussians of standard deviation :math:`\theta`
   per column) has a KL to the Gaussian prior that grows like :math:`-\log\theta` as
   :math:`\theta \to 0`: the full ELBO diverges, while its *gradient* converges to the dropout-loss gradient. Measured
   on the equivalence report's problem (:class:`vi_dropout.verify.paper.VerifyProblem`):
   :func:`improper_kl_records`.
2. **Non-concentration** (Osband 2016). With a fixed keep probability the spread of the MC
   dropout predictions comes from the masks, and the masks do not care how much data there is:
   the epistemic variance at a fixed input does not shrink as :math:`N` grows, while a Bayesian
   posterior's does: the exact GP with the network's prior, and NUTS on the network itself with
   the same prior (:func:`~comparisons.reference.nuts.run_nuts`, for the small :math:`N`).
   Beside them two LEARNED-rate methods answer whether learning the dropout rate fixes this:
   Concrete dropout (``concrete_dropout``: keep_probs and :math:`\tau` learned, :math:`\theta
   \to 0`) and the full ELBO (``full_elbo``: keep_probs, :math:`\theta` and :math:`\tau`
   learned), both with :func:`vi_dropout.infer.concrete.fit_concrete`
   (:func:`learned_rate_records`). :func:`non_concentration_records`.
3. **Sensitivity to keep_prob.** The predictive variance of MC dropout is set by the dropout
   rate, a hyper-parameter usually tuned for accuracy: :func:`keep_prob_sensitivity` trains the
   same network on the same toy data with ``keep_prob`` in {0.5, 0.8, 0.9, 0.95, 0.99} and sets
   the predictive sd across the input range next to the GP's.

:func:`run` (:mod:`.experiment`) runs the three with one :class:`PitfallSettings` and returns a
:class:`PitfallResult`; every part gives tidy records ``(dataset, method, split, metric, value)``
(``split`` carries the experiment's x-axis: theta, N or keep_prob). No file is written here
(except the NUTS chain cache, when asked for): the figures and tables are
:func:`comparisons.report.pitfalls.write_report`'s. The networks are the Keras-convention ones of :func:`vi_dropout.train_batched` (inverted
dropout on the input and the hidden layer, L2 :math:`\lambda = l^2\,\text{keep\_prob}/(2N\tau)`),
trained on the standardised toy data of :func:`comparisons.datasets.toy1d.load_toy1d` with
:math:`\tau` the true noise precision on that scale; the GP is the arc-cosine (order 1) GP whose
hyper-parameters are FIXED by the network's prior
(:func:`comparisons.gp.priors.dropout_prior_hyperparameters`, no fitting).

Example:
    >>> settings = PitfallSettings(steps=50, num_samples=20, sizes=(10, 40), hmc=None)
    >>> result = run(settings)                       # doctest: +SKIP
    >>> write_report(result, "outputs/pitfalls")     # doctest: +SKIP
"""

from __future__ import annotations

from comparisons.experiments.pitfalls.experiment import PitfallResult, run
from comparisons.experiments.pitfalls.improper_kl import improper_kl_records
from comparisons.experiments.pitfalls.non_concentration import (
    learned_rate_records,
    non_concentration_records,
)
from comparisons.experiments.pitfalls.sensitivity import (
    KeepProbSensitivity,
    keep_prob_sensitivity,
)
from comparisons.experiments.pitfalls.settings import (
    LEARNED_RATE_METHODS,
    LearnedRateFitWarning,
    PitfallHMCSettings,
    PitfallSettings,
)

__all__ = [
    "PitfallSettings",
    "PitfallHMCSettings",
    "PitfallResult",
    "improper_kl_records",
    "non_concentration_records",
    "keep_prob_sensitivity",
    "KeepProbSensitivity",
    "LEARNED_RATE_METHODS",
    "LearnedRateFitWarning",
    "learned_rate_records",
    "run",
]
