"""The simulation lives apart: no production module imports ``discord_orch.sim``.

sim/ (the loopback Discord, the stand-in openclaw, the local world, the demo) is for
``discord-orch demo``, the tests and the benchmarks. The one way in from production
code is cli.py's ``demo`` command, which imports it when run, never at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import FrozenSet, List, Tuple

SRC = Path(__file__).resolve().parents[1] / "src" / "discord_orch"
SIM = "discord_orch.sim"
# (module, function) whose imports of the simulation are allowed: the demo command.
ALLOWED = frozenset({("discord_orch.cli", "demo")})

Hit = Tuple[str, int, str, str]  # module, line, enclosing function ("" at module level), imported name


def _module_of(path: Path) -> Tuple[str, bool]:
    """The dotted name of a file under src/, and whether it is a package's __init__."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _imported_names(node: ast.AST, module: str, is_package: bool) -> List[str]:
    """What an import statement names, relative imports resolved (``from . import sim`` names the package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def sim_imports(source: str, module: str, is_package: bool = False,
                allowed: FrozenSet[Tuple[str, str]] = ALLOWED) -> List[Hit]:
    """Every import of discord_orch.sim in ``source`` (as module ``module``) that ``allowed`` does not excuse."""
    hits: List[Hit] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{function}.{child.name}" if function else child.name)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [n for n in _imported_names(child, module, is_package) if n == SIM or n.startswith(SIM + ".")]
                if names and (module, function) not in allowed:
                    hits.append((module, child.lineno, function, names[0]))
            visit(child, function)

    visit(ast.parse(source), "")
    return hits


def _production_modules() -> List[Path]:
    return sorted(p for p in SRC.rglob("*.py") if (SRC / "sim") not in p.parents)


def test_no_production_module_imports_the_simulation():
    modules = _production_modules()
    assert any(p.name == "orchestrator.py" for p in modules) and not any("sim" in p.parts for p in modules)
    hits = [hit for path in modules for hit in sim_imports(path.read_text(encoding="utf-8"), *_module_of(path))]
    assert hits == []


def test_the_demo_command_is_the_way_in_and_imports_the_simulation_lazily():
    cli = (SRC / "cli.py").read_text(encoding="utf-8")
    assert sim_imports(cli, "discord_orch.cli") == []
    # the allowance is not stale: without it, exactly the demo command's import is found
    found = sim_imports(cli, "discord_orch.cli", allowed=frozenset())
    assert [(function, name) for _module, _line, function, name in found] == [("demo", "discord_orch.sim.demo")]


def test_the_checker_flags_any_other_import_of_the_simulation():
    flagged = {
        "from .sim.demo import run_demo\n": "discord_orch.cli",               # cli.py, at module top
        "from .sim import localdiscord\n": "discord_orch.orchestrator",
        "from . import sim\n": "discord_orch.agent",
        "import discord_orch.sim.world\n": "discord_orch.report",
        "from discord_orch.sim.localdiscord import LocalDiscord\n": "discord_orch.check",
        "def submit():\n    from .sim.demo import run_demo\n": "discord_orch.cli",  # lazily, but not in demo
        "def demo():\n    from .sim.demo import run_demo\n": "discord_orch.orchestrator",
        "class C:\n    from ..sim import world\n": "discord_orch.x.y",
    }
    for source, module in flagged.items():
        assert sim_imports(source, module), f"not flagged in {module}: {source!r}"
    assert sim_imports("from . import sim\n", "discord_orch", is_package=True)
    assert sim_imports("def demo():\n    from .sim.demo import run_demo\n", "discord_orch.cli") == []
    assert sim_imports("from .similar import x\nimport discord_orch.simple\n", "discord_orch.cli") == []


# ---------------------------------------------------------------------------- the map in docs/design.md

DESIGN = SRC.parents[1] / "docs" / "design.md"


def _map_rows() -> dict:
    """docs/design.md's module table: {module: set of modules it may import}."""
    rows = {}
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or not cells[0].endswith(".py`"):
            continue
        may = set() if cells[2] == "-" else {c.strip().split(" ")[0] for c in cells[2].split(",")}
        for name in cells[0].replace("`", "").split(","):
            rows[name.strip()[:-len(".py")]] = may
    return rows


def _imports_of(path: Path) -> set:
    """The sibling modules a top-level module imports (``from .x import``, ``from . import x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return found - {"__version__", "PROJECT_URL"}   # names from the package's __init__


def test_every_module_is_on_the_map_and_imports_only_what_it_may():
    rows = _map_rows()
    modules = {p.stem for p in SRC.glob("*.py")}
    assert modules - set(rows) == set(), "modules missing from docs/design.md"
    assert set(rows) - modules == set(), "docs/design.md lists modules that do not exist"
    beyond = {m: sorted(_imports_of(SRC / f"{m}.py") - rows[m]) for m in sorted(modules)}
    assert {m: extra for m, extra in beyond.items() if extra} == {}


def test_the_map_is_layered_each_module_imports_only_those_above_it():
    order = list(_map_rows())
    upward = {m: sorted(d for d in may if d in order and order.index(d) >= order.index(m))
              for m, may in _map_rows().items()}
    assert {m: up for m, up in upward.items() if up} == {}


def test_the_map_is_read_as_written():
    """The check above is only as good as its parser: a row it reads, and a forbidden import it sees."""
    rows = _map_rows()
    assert rows["errors"] == set() and rows["state"] == {"errors", "outcome"}
    assert "sim" in rows["cli"] and "orchestrator" not in rows["reporter"]
