"""Imports flow one way: app -> alchemy_stack (settings -> stack) -> alchemy_constructs; tooling stays outside.

Read from the source with ``ast``, so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = (
    "app",
    "alchemy_constructs",
    "alchemy_stack",
    "alchemy_tools",
    "alchemy_services",
    "tests",
    "scripts",
)

FORBIDDEN = {
    "alchemy_constructs": ("app", "alchemy_stack", "alchemy_tools", "tests", "scripts"),
    "alchemy_stack": ("app", "alchemy_tools", "tests", "scripts"),
    "app.py": ("alchemy_tools", "alchemy_constructs", "tests", "scripts"),
}
"""What each part of the product must not import (its own and downstream parts are fine)."""


def imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, by full dotted name."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def sources(part: str) -> list[Path]:
    path = ROOT / part
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def violations(part: str) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources(part)
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[part]
    )


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_no_import_flows_back_up(part: str) -> None:
    assert violations(part) == []


def test_the_app_imports_only_the_stack_its_settings_and_the_rule_packs() -> None:
    project = {module for module in imported_modules(ROOT / "app.py") if module.split(".")[0] in PROJECT_PACKAGES}
    assert {module.split(".")[0] for module in project} == {"alchemy_stack"}
    assert {module.split(".")[0] for module in imported_modules(ROOT / "app.py")} <= {
        "__future__",
        "collections",
        "sys",
        "typing",
        "aws_cdk",
        "cdk_nag",
        "alchemy_stack",
    }


def test_settings_do_not_import_the_stack() -> None:
    assert not [m for m in imported_modules(ROOT / "alchemy_stack" / "settings.py") if m.startswith("alchemy_stack")]


def test_the_scan_sees_a_backward_import(tmp_path: Path) -> None:
    """The check can fail: a construct module that imports the stack is found."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from alchemy_stack.stack import AlchemyStack\n    return AlchemyStack\n")
    assert "alchemy_stack.stack" in imported_modules(module)
