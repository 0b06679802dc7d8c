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


@pytest.mark.parametrize("subpackage", ["kernels", "gp", "datasets", "metrics", "runner",
                                        "protocols", "training", "report", "cli.main"])
def test_light_subpackages_load_neither_arviz_nor_ray(subpackage):
    """(Pyro, MCMC included, comes with ``vi_dropout``, which every subpackage builds on.)"""
    loaded = [m for m in _loaded_after(f"import comparisons.{subpackage}")
              if m.split(".")[0] in ("arviz", "ray")]
    assert loaded == [], f"comparisons.{subpackage} loads {sorted({m.split('.')[0] for m in loaded})}"


def test_subpackages_are_reached_lazily():
    import comparisons

    assert "kernels" in dir(comparisons)
    assert comparisons.kernels.ArcCosineKernel.__module__ == "comparisons.kernels.arc_cosine"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        comparisons.nope  # noqa: B018
