"""The experiments: each has a ``Settings`` dataclass, ``run(settings)`` and a result with tidy
records; file writing lives in :mod:`comparisons.report`."""

from __future__ import annotations

__all__: list[str] = []
