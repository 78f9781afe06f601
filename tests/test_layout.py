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
    """docs/design.md's module tables: {module: set of modules it may import}; a module in a package
    is named by its path (``core/hub``), a package by its folder (``steps``)."""
    rows = {}
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or not cells[0].endswith((".py`", "/`")):
            continue
        may = set() if cells[2] == "-" else {c.strip().split(" ")[0] for c in cells[2].split(",")}
        for name in cells[0].replace("`", "").split(","):
            name = name.strip()
            rows[name[:-len(".py")] if name.endswith(".py") else name.rstrip("/")] = may
    return rows


def _key(dotted: str) -> str:
    """discord_orch.core.hub → core/hub; discord_orch.steps → steps; discord_orch.claim.x → claim."""
    parts = dotted.split(".")[1:]
    if not parts:
        return ""
    if parts[0] in PACKAGES:
        return "/".join(parts[:2])
    return parts[0]


PACKAGES = ("core", "steps")


def _source_modules() -> dict:
    """Every production module by its map name (packages' __init__ by the folder's name)."""
    found = {}
    for path in _production_modules():
        module, is_package = _module_of(path)
        found[_key(module) or "__init__"] = (path, module, is_package)   # the package's own: version, URL
    return found


def _imports_of(path: Path, module: str = "", is_package: bool = False) -> set:
    """The project's modules a module imports, by their map names (relative imports resolved)."""
    if not module:
        module, is_package = _module_of(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            for name in _imported_names(node, module, is_package):
                key = _key(name)
                if key and key != _key(module) and (key.split("/")[0] in PACKAGES or "/" not in key):
                    found.add(key)
    sources = _source_modules()
    # ``from . import x`` names x as a module; ``from .x import name`` names x.name: keep known modules
    return {k if k in sources else k.split("/")[0] for k in found} & (set(sources) | set(PACKAGES)) \
        - {"__version__", "PROJECT_URL"}


def test_every_module_is_on_the_map_and_imports_only_what_it_may():
    rows = _map_rows()
    sources = _source_modules()
    assert set(sources) - set(rows) == set(), "modules missing from docs/design.md"
    assert set(rows) - set(sources) == set(), "docs/design.md lists modules that do not exist"
    beyond = {m: sorted(_imports_of(path, module, pkg) - rows[m]) for m, (path, module, pkg) in sorted(sources.items())}
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


# ---------------------------------------------------------------------------- the core and its steps (issue 22)

BUDGETS = {"orchestrator": 200, "core/hub": 350}   # lines; a merge never raises these: it splits the work
STEP_MAX_LINES = 400
FUNCTION_MAX_LINES = 60


def _long_functions(source: str, limit: int = FUNCTION_MAX_LINES) -> List[Tuple[str, int]]:
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]


def test_the_size_budgets_hold():
    sources = _source_modules()
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, (path, _, _) in sources.items()}
    over = {name: (sizes[name], cap) for name, cap in BUDGETS.items() if sizes[name] > cap}
    over.update({name: (size, STEP_MAX_LINES) for name, size in sizes.items()
                 if name.startswith("steps/") and size > STEP_MAX_LINES})
    assert over == {}
    long = {name: found for name, (path, _, _) in sources.items()
            if (found := _long_functions(path.read_text(encoding="utf-8")))}
    assert long == {}, f"functions over {FUNCTION_MAX_LINES} lines: {long}"


def test_the_budget_checks_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_MAX_LINES))
    assert _long_functions(f"def f():\n{body}\n") == [("f", FUNCTION_MAX_LINES + 1)]
    assert _long_functions(f"def f():\n{body}\n", limit=FUNCTION_MAX_LINES + 1) == []


def test_the_core_imports_no_step_and_no_step_imports_another():
    sources = _source_modules()
    core = {name: _imports_of(*sources[name]) for name in sources if name.startswith("core/")}
    assert core and {n: sorted(i) for n, i in core.items() if {d for d in i if d.startswith("steps")} or
                     i - {"errors"} - {d for d in i if d.startswith("core")}} == {}, \
        "the core imports only errors and itself"
    steps = {name: _imports_of(*sources[name]) for name in sources if name.startswith("steps/")}
    assert len(steps) >= 10
    assert {n: sorted(d for d in i if d.startswith("steps")) for n, i in steps.items()
            if any(d.startswith("steps") for d in i)} == {}


def test_the_import_checks_see_a_step_importing_another(tmp_path):
    step = tmp_path / "steps" / "x.py"
    step.parent.mkdir()
    step.write_text("from ..steps import y\nfrom .running import Live\nfrom ..core.hub import Hub\n")
    assert {"steps", "steps/running", "core/hub"} <= _imports_of(step, "discord_orch.steps.x", False)
