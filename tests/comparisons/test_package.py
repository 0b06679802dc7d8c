"""The package layout: ``import comparisons`` is light, the subpackages import what they hold."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(statement: str) -> list[str]:
    code = (f"import sys\n{statement}\n"
            f"print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('arviz', 'ray') "
            f"or m.startswith('pyro.infer.mcmc')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def test_import_comparisons_loads_no_heavy_dependency():
    assert _loaded_after("import comparisons") == []


LIGHT_SUBPACKAGES = ["kernels", "gp", "datasets", "metrics", "runner", "protocols", "training",
                     "report", "cli.main"]


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules if m.split(".")[0] in ("arviz", "ray")})


def test_light_subpackages_load_neither_arviz_nor_ray():
    """(Pyro, MCMC included, comes with ``vi_dropout``, which every subpackage builds on.) All of
    them are imported in ONE interpreter: imports only add modules, so if together they load
    neither, none does alone; only on a failure is each imported alone to name the culprit."""
    together = _heavy(_loaded_after("\n".join(f"import comparisons.{s}"
                                              for s in LIGHT_SUBPACKAGES)))
    if together:
        culprits = {s: _heavy(_loaded_after(f"import comparisons.{s}")) for s in LIGHT_SUBPACKAGES}
        pytest.fail("; ".join(f"comparisons.{s} loads {heavy}"
                              for s, heavy in culprits.items() if heavy))


def test_subpackages_are_reached_lazily():
    import comparisons

    assert "kernels" in dir(comparisons)
    assert comparisons.kernels.ArcCosineKernel.__module__ == "comparisons.kernels.arc_cosine"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        comparisons.nope  # noqa: B018
