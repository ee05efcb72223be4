"""The import layering of DESIGN.md: segrefiner -> pipelines -> flows, never backwards; services
(the local servers) stand apart, on the standard library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ORCHESTRATION = {"prefect", "prefect_dask", "mlflow"}
BATCH = {"dask", "distributed", "zarr"}
# package -> top-level modules it must never import
FORBIDDEN = {
    "segrefiner": ORCHESTRATION | BATCH | {"pipelines", "flows", "services"},
    "pipelines": ORCHESTRATION | {"flows", "services"},
    # the local services' settings and supervisor: the standard library only
    "services": ORCHESTRATION | BATCH | {"torch", "numpy", "segrefiner", "pipelines", "flows"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {mod}"
        for path in files
        for line, mod in _imports(path)
        if mod in FORBIDDEN[package]
    ]
    assert not bad, "layering violated:\n" + "\n".join(bad)


def test_checker_sees_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import prefect\nfrom mlflow.tracking import MlflowClient\nimport os\n")
    assert [m for _, m in _imports(bad)] == ["prefect", "mlflow", "os"]
