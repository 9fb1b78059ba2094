"""The curated public API: sorted ``__all__`` whose names all exist."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import pytest

import keyproof

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(keyproof.__path__, "keyproof.")
    if not info.name.rsplit(".", 1)[-1].startswith("_")
)


def isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ``ruff``'s RUF022 keeps."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported, key=isort_key), f"{name}.__all__ is not sorted"
    for attribute in exported:
        found = hasattr(module, attribute) or importlib.util.find_spec(f"{name}.{attribute}")
        assert found, f"{name}.{attribute} is exported but missing"


def test_package_exports_resolve_lazily():
    assert keyproof.Settings.__name__ == "Settings"
    assert keyproof.create_app.__name__ == "create_app"
    with pytest.raises(AttributeError):
        _ = keyproof.not_a_name  # type: ignore[attr-defined]
