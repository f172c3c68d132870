"""The one-way flow (README "Architecture") is enforced: the import contracts hold, and they catch a violation."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("compute", "store", "dashboard", "jobs")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root), "HOME": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def copy_tree(dest: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "data", "assets"))
    shutil.copy(REPO / "lexiscope.py", dest / "lexiscope.py")
    shutil.copy(REPO / ".importlinter", dest / ".importlinter")
    return dest


@pytest.mark.slow
def test_the_import_contracts_hold_and_fail_on_planted_violations(tmp_path):
    kept = lint_imports(REPO)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "0 broken" in kept.stdout

    plants = {  # module to add -> the contract it must break
        "dashboard/lib/planted.py": ("from compute import geometry\n", "The dashboard never imports compute"),
        "store/planted.py": ("import torch\n", "store imports neither torch nor dash"),
        "compute/planted.py": ("import dash\n", "compute never imports dash"),
        "jobs/client_planted.py": ("from dashboard.lib import urls\n", "Layers"),
    }
    for i, (path, (line, contract)) in enumerate(plants.items()):
        root = copy_tree(tmp_path / f"tree{i}")
        (root / path).write_text(line)
        if path.startswith("jobs/client"):  # make the planted module part of the torch-free client path too
            (root / "jobs/client.py").write_text(
                (root / "jobs/client.py").read_text() + "\nimport jobs.client_planted\n"
            )
        broken = lint_imports(root)
        assert broken.returncode != 0, f"{path}: {line.strip()} was not caught"
        assert contract in broken.stdout, broken.stdout


def test_no_test_module_imports_another():
    test_modules = {p.stem for p in (REPO / "tests").glob("*.py")} - {"helpers"}
    for path in (REPO / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.split(".")[0] in test_modules | {"tests"}]
            assert not bad, f"{path.name} imports {bad}: shared test code belongs in tests/helpers.py"


def test_only_the_settings_module_reads_lexiscope_variables():
    read = re.compile(r"""(environ\.get|getenv)\(\s*["']LEXISCOPE_|environ\[["']LEXISCOPE_\w+["']\](?!\s*=)""")
    offenders = [
        str(path.relative_to(REPO))
        for pkg in (*PACKAGES, "benchmarks")
        for path in (REPO / pkg).rglob("*.py")
        if path.name != "settings.py" and read.search(path.read_text())
    ]
    assert not offenders, f"read LEXISCOPE_* through store.settings, not os.environ: {offenders}"


def test_the_readme_lists_every_setting():
    from store.settings import Settings

    readme = (REPO / "README.md").read_text()
    missing = [
        f"LEXISCOPE_{name.upper()}" for name in Settings.model_fields if f"`LEXISCOPE_{name.upper()}`" not in readme
    ]
    assert not missing, f"README's Settings table lacks {missing}"
