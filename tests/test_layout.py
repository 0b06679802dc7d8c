"""The layout rules of docs/layout.md that a test can hold: no library module over about 500
lines without the reason in its docstring, no relative imports (absolute, as in Pyro), and no
import of another module's private name."""

from __future__ import annotations

import ast

import pytest

from tests.common import REPO

MODULES = sorted(p for pkg in ("vi_dropout", "comparisons") for p in (REPO / pkg).rglob("*.py"))
#: "about 500 lines": a module may run a little over before it must say why
LIMIT = 520


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_rules(path):
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    if len(source.splitlines()) > LIMIT:
        doc = ast.get_docstring(tree) or ""
        assert "Why one module of this size:" in doc, (
            f"{path.relative_to(REPO)} has {len(source.splitlines())} lines: split it, or say "
            f"why it is one module in its docstring")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in {path.relative_to(REPO)}: {node.module}"
            if node.module and node.module.split(".")[0] in ("vi_dropout", "comparisons"):
                private = [a.name for a in node.names if a.name.startswith("_")
                           and not a.name.startswith("__")]
                assert not private, (f"{path.relative_to(REPO)} imports private names "
                                     f"{private} from {node.module}")
