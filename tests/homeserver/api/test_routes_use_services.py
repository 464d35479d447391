"""Routes call services, never stores. import-linter (pyproject.toml) checks that no route
imports `homeserver.storage`; this checks what an import contract cannot see: a route
reaching a store through the HomeServer (`hs.room_store`, `get_hs(request).db`) or through
a service (`hs.user_admin.store`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Known routes that still read stores, each to be removed when its service lands.
ALLOWED: set[tuple[str, str]] = set()


def _store_attributes() -> set[str]:
    """The HomeServer attributes that hold a store (or the database): those assigned
    from a class or function that server.py imports from homeserver.storage."""
    tree = ast.parse((ROOT / "homeserver" / "server.py").read_text())
    from_storage = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("homeserver.storage")
        for alias in node.names
    }
    attributes = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in from_storage
        ):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                    attributes.add(target.attr)
    return attributes


def _is_homeserver(node: ast.expr) -> bool:
    """`hs`, or `get_hs(...)`."""
    if isinstance(node, ast.Name):
        return node.id == "hs"
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "get_hs"


def _store_uses(path: Path, stores: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in stores and _is_homeserver(node.value):
            found.add(node.attr)
        elif node.attr == "store" and isinstance(node.value, ast.Attribute) and _is_homeserver(node.value.value):
            found.add(f"{node.value.attr}.store")
    return found


def test_the_check_knows_the_stores() -> None:
    stores = _store_attributes()
    assert {"db", "users", "devices", "room_store", "event_store"} <= stores


def test_routes_reach_no_store() -> None:
    stores = _store_attributes()
    uses = {
        (str(path.relative_to(ROOT)), attr)
        for path in sorted((ROOT / "homeserver" / "api").rglob("*.py"))
        for attr in _store_uses(path, stores)
    }
    assert uses - ALLOWED == set(), "routes must call a service, not a store"
