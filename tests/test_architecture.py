"""The folder names are the architecture: the import-linter contracts in pyproject.toml hold,
they catch a wrong import, and shop/ keeps only a few shared modules at its top."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_that_reaches_up_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "shop", tmp_path / "shop", ignore=shutil.ignore_patterns("spec"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    model = tmp_path / "shop" / "checkout" / "model.py"
    model.write_text(model.read_text() + "\nfrom shop.api import acp_render  # noqa\n")
    stock = tmp_path / "shop" / "checkout" / "stock.py"
    stock.write_text(stock.read_text() + "\nfrom shop.storage import sqlite_tuning  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "Layers: api and cli call checkout" in result.stdout
    assert "shop.checkout.model -> shop.api.acp_render" in result.stdout
    assert "shop.checkout.stock -> shop.storage.sqlite_tuning" in result.stdout
    assert "2 broken" in result.stdout


def test_shop_keeps_at_most_eight_modules_at_its_top() -> None:
    top = sorted(p.name for p in (ROOT / "shop").glob("*.py"))
    assert len(top) <= 8, top


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for init in (ROOT / "shop").glob("*/__init__.py"):
        text = init.read_text()
        assert text.startswith('"""'), init
        if init.parent.name != "spec":
            assert "import" in text.split('"""')[1], f"{init}: say what the package may import"
