"""Layering rules that import-linter cannot see: which imports may be lazy, and what the
gateway process loads (import-linter's contracts run in `make test` as `lint-imports`)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT

# Project imports allowed inside a function, each for the reason given. Anything else lazy
# hides the import graph from the reader and from import-linter's layers.
ALLOWED_LAZY = {
    ("gateway/cli/__init__.py", "web.cli"): "keeps Flask out of `ringfence run`",
    ("gateway/call/process.py", "gateway.media.rtp"): "pyVoIP loads on the first answered call",
    ("gateway/call/process.py", "gateway.call.certificates"):
        "cryptography (~14 MB) loads only when [stir] names where certificates come from",
}


def _lazy_project_imports(path: Path) -> list[str]:
    """Modules of gateway/web imported inside a function of `path` (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [n for n in names if n.split(".")[0] in ("gateway", "web")]
    return found


def test_project_imports_are_at_module_level_unless_listed() -> None:
    lazy = set()
    for package in ("gateway", "web"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            relative = path.relative_to(REPO_ROOT).as_posix()
            lazy |= {(relative, module) for module in _lazy_project_imports(path)}
    assert lazy == set(ALLOWED_LAZY), (
        "a project import inside a function: move it to the top of the module, or add it to "
        "ALLOWED_LAZY with the reason it must stay lazy")


def test_the_gateway_process_loads_neither_flask_nor_alembic_nor_pyvoip(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('data_dir = "data"\n')
    subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), "db", "upgrade"],
                   check=True, capture_output=True, cwd=REPO_ROOT)
    # What `ringfence run` imports before its first call: the command, the process wiring and
    # an open, current store (the schema check must not need Alembic).
    probe = textwrap.dedent(f"""
        import sys
        from gateway.cli import build_parser
        from gateway.call import process
        from gateway.config import load_settings
        from gateway.store import open_store
        build_parser(with_web=False)
        store = open_store(load_settings({str(config)!r}))
        store.close()
        heavy = ("flask", "werkzeug", "alembic", "pyVoIP", "web", "waitress", "babel",
                 "flask_babel", "cryptography")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "[]"
