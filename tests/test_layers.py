"""The package's layers: every module imports only from its own layer or the layers below it, and never a
private (``_``-prefixed) name of another module. The order is written in docs/ARCHITECTURE.md ("Layers").

Every ``import`` / ``from ... import`` of every module under ``src/mixslam`` counts, function-level (lazy)
imports included, and so does reading a private attribute of an imported module (``vo._tracks``).
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mixslam"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("mixslam.errors", "mixslam.data", "mixslam.jsonable", "mixslam.runner", "mixslam.atomic")),
    ("precision", ("mixslam.precision",)),
    ("kernels", ("mixslam.kernels",)),
    ("storage", ("mixslam.storage",)),
    ("linear", ("mixslam.linear",)),
    ("lie", ("mixslam.lie",)),
    ("problem", ("mixslam.problem",)),
    ("init", ("mixslam.init",)),
    ("io", ("mixslam.io",)),
    ("solve", ("mixslam.solve",)),
    ("backend", ("mixslam.backend",)),
    ("drivers", ("mixslam.pgo", "mixslam.ba", "mixslam.driver", "mixslam.solvers")),
    ("eval", ("mixslam.eval",)),
    ("sim", ("mixslam.sim",)),
    ("slam", ("mixslam.slam",)),
    ("bench", ("mixslam.bench",)),
    ("demo", ("mixslam.demo",)),
    ("cli", ("mixslam.cli", "mixslam.__main__")),
    ("package", ("mixslam",)),  # the package __init__ re-exports the public API from below
]
"""Layers from the bottom up: (name, module prefixes). A module belongs to the layer of its longest prefix."""

PUBLIC_DUNDERS = {"__version__"}
"""Underscore names any module may import (from the package root)."""

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}
"""(importing module, imported module or module.private_name) -> why it is still allowed. Keep it short."""


# ---------------------------------------------------------------------------------------------------------
# the scanner
# ---------------------------------------------------------------------------------------------------------
def package_sources(root: Path = SRC) -> dict[str, tuple[str, bool]]:
    """{dotted module name: (source text, is a package __init__)} of every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module``'s layer (longest matching prefix), None when it has none."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = module == p or (p != "mixslam" and module.startswith(p + "."))  # the root: itself only
            if inside and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def imports_of(module: str, source: str, is_pkg: bool, known: set[str]) -> list[tuple[int, str, str | None]]:
    """(line, imported module, imported name or None) of every mixslam import in ``source``; ``from X import
    y`` where ``X.y`` is a module of ``known`` counts as importing the module ``X.y``. Private attributes read
    from a module bound by an import (``mod._name``) are reported as imported names."""
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    tree = ast.parse(source)
    out, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "mixslam":
                    out.append((node.lineno, a.name, None))
                    if a.asname:
                        bound[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mixslam":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in known:
                    out.append((node.lineno, sub, None))
                    bound[a.asname or a.name] = sub
                else:
                    out.append((node.lineno, target, a.name))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append((node.lineno, bound[node.value.id], node.attr))
    return out


def violations(sources: dict[str, tuple[str, bool]]) -> dict[str, list[tuple[str, str, int]]]:
    """``{"upward": [...], "private": [...], "unplaced": [...]}``: (module, what it imports, line) of every
    import from a higher layer, of every private name of another module, and modules without a layer."""
    known = set(sources)
    out = {"upward": [], "private": [], "unplaced": []}
    for module, (source, is_pkg) in sources.items():
        mine = layer_of(module)
        if mine is None:
            out["unplaced"].append((module, "", 0))
            continue
        for line, target, name in imports_of(module, source, is_pkg, known):
            if name is not None and name.startswith("_") and name not in PUBLIC_DUNDERS and target != module:
                out["private"].append((module, f"{target}.{name}", line))
            theirs = layer_of(target)
            if theirs is None:
                out["unplaced"].append((target, f"imported by {module}", line))
            elif theirs > mine and not (target == "mixslam" and name in PUBLIC_DUNDERS):
                out["upward"].append((module, target, line))
    return out


def _describe(found: list) -> str:
    return "\n".join(f"  {m} -> {t} (line {ln}; layer {_layer_name(m)} -> {_layer_name(t)})" for m, t, ln in found)


def _layer_name(module: str) -> str:
    i = layer_of(module)
    return "?" if i is None else LAYERS[i][0]


# ---------------------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------------------
def test_every_module_has_a_layer():
    unplaced = violations(package_sources())["unplaced"]
    assert not unplaced, ("modules without a layer; add them to LAYERS here and to docs/ARCHITECTURE.md:\n"
                          + "\n".join(f"  {m} {why}" for m, why, _ in unplaced))


def test_no_import_goes_up_a_layer():
    found = [v for v in violations(package_sources())["upward"] if (v[0], v[1]) not in KNOWN_VIOLATIONS]
    assert not found, ("imports from a higher layer (move the shared code down, or the call up):\n"
                       + _describe(found))


def test_no_private_name_of_another_module_is_imported():
    found = [v for v in violations(package_sources())["private"] if (v[0], v[1]) not in KNOWN_VIOLATIONS]
    assert not found, ("private names imported from another module (make the helper public, in a module both "
                       "can import):\n" + _describe(found))


def test_known_violations_still_happen():
    found = violations(package_sources())
    seen = {(m, t) for kind in ("upward", "private") for m, t, _ in found[kind]}
    stale = sorted(set(KNOWN_VIOLATIONS) - seen)
    assert not stale, f"fixed, remove from KNOWN_VIOLATIONS: {stale}"


def test_the_check_flags_a_fake_upward_import_and_a_private_name():
    fake = {
        "mixslam": ("from . import __version__\n", True),
        "mixslam.lie": ("", True),
        "mixslam.lie.so3": ("def f():\n    from ..slam import vo\n    return vo._tracks\n", False),
        "mixslam.io": ("", True),
        "mixslam.io.tum": ("from .g2o import _fmt\nfrom ..lie import so3\nimport mixslam.bench.run\n", False),
        "mixslam.io.g2o": ("", False),
        "mixslam.slam": ("", True),
        "mixslam.slam.vo": ("from ..io.tum import write_tum\n", False),
        "mixslam.bench": ("", True),
        "mixslam.bench.run": ("", False),
        "mixslam.cli": ("from . import __version__\n", False),
        "mixslam.nowhere": ("", False),
    }
    found = violations(fake)
    assert {(m, t) for m, t, _ in found["upward"]} == {("mixslam.lie.so3", "mixslam.slam.vo"),
                                                        ("mixslam.io.tum", "mixslam.bench.run")}
    assert {(m, t) for m, t, _ in found["private"]} == {("mixslam.lie.so3", "mixslam.slam.vo._tracks"),
                                                         ("mixslam.io.tum", "mixslam.io.g2o._fmt")}
    assert [m for m, _, _ in found["unplaced"]] == ["mixslam.nowhere"]
