"""The README's API tour runs as written (its Python blocks, in order, in one namespace) and the
README stays a landing page (at most 250 lines; the details live in docs/)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_is_a_landing_page():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_code_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["w"].shape == (5, 3, 4)
    assert torch.isfinite(namespace["log_q"]).all()
    assert namespace["samples"].shape == (1000, 20, 1)
    assert namespace["summary"].log_likelihood.shape == (20,)
    assert np.isfinite(namespace["mean"]).all() and (namespace["var"] > 0).all()
    assert "log_likelihood" in namespace["idata"].children
