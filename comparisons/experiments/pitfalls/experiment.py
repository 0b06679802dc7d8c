r"""The three toy pitfalls in one run: :class:`PitfallSettings` -> :func:`run` -> :class:`PitfallResult`."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

from comparisons.experiments.pitfalls.improper_kl import improper_kl_records
from comparisons.experiments.pitfalls.non_concentration import non_concentration_records
from comparisons.experiments.pitfalls.sensitivity import (
    KeepProbSensitivity,
    keep_prob_sensitivity,
)
from comparisons.experiments.pitfalls.settings import LearnedRateFitWarning, PitfallSettings
from comparisons.reference.nuts import HMCDiagnosticsWarning

__all__ = ["PitfallResult", "run"]


@dataclass(frozen=True)
class PitfallResult:
    """Everything :func:`run` produced.

    Attributes:
        settings: the :class:`PitfallSettings` used.
        improper_kl: records of :func:`improper_kl_records`.
        non_concentration: records of :func:`non_concentration_records`.
        sensitivity: the :class:`KeepProbSensitivity` of :func:`keep_prob_sensitivity`.
        hmc_warnings: the messages of the :class:`~comparisons.reference.nuts.HMCDiagnosticsWarning`
            issued by the non-concentration experiment (also re-issued as warnings).
        wall_times_s: ``{"improper_kl", "non_concentration", "keep_prob_sensitivity"}`` seconds.
        fit_warnings: the messages of the :class:`LearnedRateFitWarning` (failed learned-rate
            fits) of the non-concentration experiment (also re-issued as warnings).
    """

    settings: PitfallSettings
    improper_kl: list[dict]
    non_concentration: list[dict]
    sensitivity: KeepProbSensitivity
    hmc_warnings: tuple[str, ...]
    wall_times_s: dict[str, float]
    fit_warnings: tuple[str, ...] = ()

    @property
    def records(self) -> list[dict]:
        """All tidy records: improper KL, non-concentration, keep_prob sensitivity."""
        return self.improper_kl + self.non_concentration + self.sensitivity.records


def run(settings: PitfallSettings | None = None, *, progress: bool = False,
        cache_dir: str | os.PathLike | None = None) -> PitfallResult:
    """Run the three pitfall experiments with one set of settings.

    Args:
        settings: :class:`PitfallSettings` (default ``PitfallSettings()``).
        progress: a progress bar over the non-concentration sizes.
        cache_dir: NUTS chain cache of the non-concentration experiment (e.g.
            ``OUT/nuts-cache``; ``None``: no cache).

    Returns:
        :class:`PitfallResult`. HMC diagnostics warnings are collected in
        ``hmc_warnings``, failed learned-rate fits in ``fit_warnings``; both are re-issued.

    Example:
        >>> res = run(PitfallSettings(steps=50, num_samples=20, sizes=(10,), hmc=None))  # doctest: +SKIP
        >>> sorted(res.wall_times_s)  # doctest: +SKIP
        ['improper_kl', 'keep_prob_sensitivity', 'non_concentration']
    """
    settings = PitfallSettings() if settings is None else settings
    if not isinstance(settings, PitfallSettings):
        raise ValueError(f"settings must be a PitfallSettings, got {type(settings).__name__}")
    times = {}
    t0 = time.perf_counter()
    kl = improper_kl_records()
    times["improper_kl"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HMCDiagnosticsWarning)
        warnings.simplefilter("always", LearnedRateFitWarning)
        nc = non_concentration_records(settings.sizes, keep_prob=settings.keep_prob,
                                       settings=settings, progress=progress, hmc=settings.hmc,
                                       cache_dir=cache_dir, learned_rates=settings.learned_rates)
    collected = {HMCDiagnosticsWarning: [], LearnedRateFitWarning: []}
    for w in caught:
        for category, messages in collected.items():
            if issubclass(w.category, category):
                messages.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    times["non_concentration"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kps = keep_prob_sensitivity(settings=settings)
    times["keep_prob_sensitivity"] = time.perf_counter() - t0
    return PitfallResult(settings, kl, nc, kps, tuple(collected[HMCDiagnosticsWarning]), times,
                         tuple(collected[LearnedRateFitWarning]))
