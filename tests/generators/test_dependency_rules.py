"""DESIGN.md: generators/ and metrics/ are plain libraries. They never import django,
evalsite or studies, nor each other."""
import ast
from pathlib import Path

import generators

FORBIDDEN = {"django", "evalsite", "studies", "metrics"}
PACKAGE_DIR = Path(generators.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ):
            names.update(arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    return names


def test_rule_catches_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from evalsite.models import Output\n    import importlib\n    importlib.import_module('metrics.fid')\n")
    assert {"evalsite.models", "metrics.fid"} <= imported_modules(sample)


def offenders(package_dir: Path, forbidden: set[str]) -> set[str]:
    return {
        f"{path.relative_to(package_dir)}: {name}"
        for path in sorted(package_dir.rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in forbidden
    }


def test_generators_import_no_web_or_metrics_code():
    assert len(list(PACKAGE_DIR.rglob("*.py"))) >= 10
    assert not offenders(PACKAGE_DIR, FORBIDDEN)


def test_metrics_import_no_web_or_generator_code():
    import metrics

    package = Path(metrics.__file__).parent
    assert len(list(package.rglob("*.py"))) >= 8
    assert not offenders(package, {"django", "evalsite", "studies", "generators"})


def test_evalsite_never_imports_studies():
    """studies depends on evalsite's outputs, never the other way."""
    import evalsite

    package = Path(evalsite.__file__).parent
    assert len(list(package.rglob("*.py"))) >= 20
    assert not offenders(package, {"studies"})
