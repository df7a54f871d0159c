"""Every module states its public API in ``__all__``, and every name listed there exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import reconciler

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(reconciler.__path__, prefix="reconciler.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_public_api_and_every_listed_name_exists(name: str) -> None:
    module = importlib.import_module(name)

    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_module_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)

    assert (module.__doc__ or "").strip() not in ("", "TODO"), f"{name} has no docstring"
