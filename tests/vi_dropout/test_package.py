"""The top level of vi_dropout: a literal list of the user-facing names, each importable and
documented in the API reference (by the module that defines it); no internals."""

from __future__ import annotations

import ast
import importlib
import sys
import types

import pytest

import vi_dropout
from tests.common import REPO


def test_all_is_a_literal_list_of_user_facing_names():
    tree = ast.parse((REPO / "vi_dropout" / "__init__.py").read_text())
    (literal,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                  and any(getattr(t, "id", None) == "__all__" for t in node.targets)]
    assert isinstance(literal, ast.List)
    names = [elt.value for elt in literal.elts]
    assert names == vi_dropout.__all__ and len(set(names)) == len(names)
    assert 15 <= len(names) <= 20
    for internal in ("draw_masks", "binary_entropy", "elbo_dropout_offset", "DropStream"):
        assert internal not in names and not hasattr(vi_dropout, internal)


def test_every_top_level_name_is_documented_by_its_module():
    api = (REPO / "docs" / "api" / "vi_dropout.md").read_text()
    for name in vi_dropout.__all__:
        obj = getattr(vi_dropout, name)
        module = obj.__module__
        assert importlib.import_module(module) is not None
        assert f".. automodule:: {module}\n" in api, (name, module)
        assert obj.__doc__ and obj.__doc__.strip(), name


def test_an_attribute_error_inside_a_names_module_reaches_the_user(monkeypatch):
    """A name's module that fails with an AttributeError while it loads (e.g. a dependency built
    for an older NumPy: "module 'numpy' has no attribute 'float'") shows that error, not
    "module 'vi_dropout' has no attribute 'mc_predict'"."""
    broken = types.ModuleType("vi_dropout.predict")

    def fail(name):
        raise AttributeError("module 'numpy' has no attribute 'float'")

    broken.__getattr__ = fail
    monkeypatch.setitem(sys.modules, "vi_dropout.predict", broken)
    monkeypatch.delitem(vi_dropout.__dict__, "mc_predict", raising=False)
    with pytest.raises(AttributeError, match="module 'numpy' has no attribute 'float'"):
        vi_dropout.mc_predict  # noqa: B018


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="module 'vi_dropout' has no attribute 'mc_predcit'"):
        vi_dropout.mc_predcit  # noqa: B018
    assert vi_dropout.kl.__name__ == "vi_dropout.kl"  # a submodule, imported on first use


def test_a_dotted_name_is_an_attribute_error():
    """``getattr(vi_dropout, "kl.x")`` searched for the module ``vi_dropout.kl.x`` and raised
    ModuleNotFoundError, which ``hasattr`` does not catch."""
    assert not hasattr(vi_dropout, "nosuch.module")
    assert not hasattr(vi_dropout, "kl.kl_large_width")
    with pytest.raises(AttributeError, match="has no attribute 'nosuch.module'"):
        getattr(vi_dropout, "nosuch.module")


def test_the_stub_declares_what_the_package_defines():
    """Type checkers and IDEs read ``__init__.pyi`` INSTEAD of ``__init__.py``: it must import
    exactly the names of ``__all__`` (lazy_loader imports them from it) and declare the other
    public values ``__init__.py`` defines (``vi_dropout.__version__``), or a type checker calls
    them missing."""
    stub = ast.parse((REPO / "vi_dropout" / "__init__.pyi").read_text())
    imported = [alias.name for node in stub.body if isinstance(node, ast.ImportFrom)
                for alias in node.names]
    assert sorted(imported) == sorted(vi_dropout.__all__)
    declared = {node.target.id for node in stub.body if isinstance(node, ast.AnnAssign)}
    declared |= {t.id for node in stub.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
    init = ast.parse((REPO / "vi_dropout" / "__init__.py").read_text())
    defined = {t.id for node in init.body if isinstance(node, ast.Assign)
               for t in node.targets if isinstance(t, ast.Name)}
    defined = {n for n in defined if not n.startswith("_") or n.endswith("__")} - {"__all__"}
    assert "__version__" in defined
    assert defined <= declared, sorted(defined - declared)
