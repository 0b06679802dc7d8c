"""Comparisons of MC dropout with exact Gaussian processes, reference posteriors and the UCI
benchmarks."""

__all__: list[str] = []
