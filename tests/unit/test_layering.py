"""The architecture's one-way arrows: the model package knows no HTTP and no service."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import latentwire

PACKAGE = Path(latentwire.__file__).parent
WEB = {"fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings", "httpx", "multipart", "uvloop"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_model_package_imports_no_web_framework_and_no_service() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        roots = imported_roots(path)
        assert not roots & WEB, f"{path.name} imports {sorted(roots & WEB)}"
        services = {r for r in roots if r.startswith("latentwire_")}
        assert not services, f"{path.name} imports the services {sorted(services)}"


def test_loading_every_module_pulls_in_no_web_framework() -> None:
    """What the trainer gets when it imports the whole model package."""
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module('latentwire.' + m)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    loaded = set(
        json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout)
    )
    assert not loaded & WEB, sorted(loaded & WEB)


def test_errors_carry_no_http_status() -> None:
    from latentwire import errors

    for name in errors.__all__:
        assert not hasattr(getattr(errors, name), "status"), name
