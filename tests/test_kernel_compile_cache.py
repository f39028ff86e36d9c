"""The jsii kernel's compile cache: when it is on, and the preload's own behaviour under plain node.

The preload (alchemy_stack/kernel_compile_cache.js) runs here under `node --require`, as kernel-node runs it,
on small modules of the test's own; `make integration` synthesizes the stack through it with the real CLI.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alchemy_stack import kernel_compile_cache
from alchemy_stack.kernel_compile_cache import CACHE_VARIABLE, KERNEL_NODE, use_compile_cache

PRELOAD = KERNEL_NODE.with_name("kernel_compile_cache.js")

SIBLING = "exports.greeting = 'hello from ' + require('path').basename(__filename);\n"
MAIN = """#!/usr/bin/env node
const sibling = require('./sibling');
const resolved = require.resolve('./sibling');
console.log(JSON.stringify({
  greeting: sibling.greeting,
  dirname: __dirname,
  resolved,
  cached: require.cache[resolved] !== undefined,
  sameExports: module.exports === exports,
}));
"""


@pytest.fixture
def kernel_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process that has not imported aws_cdk yet (this test process has)."""
    for name in [name for name in sys.modules if name == "aws_cdk" or name.startswith("aws_cdk.")]:
        monkeypatch.delitem(sys.modules, name)


def test_the_kernel_starts_on_kernel_node_with_the_cache_under_the_users_cache_home(kernel_less: None) -> None:
    environ = {"XDG_CACHE_HOME": "/home/someone/.cache-elsewhere"}
    assert use_compile_cache(environ)
    assert environ["JSII_NODE"] == str(KERNEL_NODE)
    assert environ[CACHE_VARIABLE] == "/home/someone/.cache-elsewhere/alchemy/jsii-compile-cache"
    assert os.access(KERNEL_NODE, os.X_OK)


def test_a_cache_directory_already_chosen_is_kept(kernel_less: None) -> None:
    environ = {CACHE_VARIABLE: "/srv/cache"}
    assert use_compile_cache(environ)
    assert environ[CACHE_VARIABLE] == "/srv/cache"


@pytest.mark.parametrize(
    "environ",
    [{"JSII_NODE": "/opt/node/bin/node"}, {CACHE_VARIABLE: ""}],
    ids=["a node of the callers choice", "turned off"],
)
def test_the_callers_choice_is_left_as_it_is(kernel_less: None, environ: dict[str, str]) -> None:
    before = dict(environ)
    assert not use_compile_cache(environ)
    assert environ == before


def test_nothing_changes_once_the_kernel_runs() -> None:
    """This process imported aws_cdk: its kernel runs, and a JSII_NODE set now would only mislead."""
    assert "aws_cdk" in sys.modules
    environ: dict[str, str] = {}
    assert not use_compile_cache(environ)
    assert environ == {}


def test_importing_the_stack_package_turns_the_cache_on_before_aws_cdk(kernel_less: None) -> None:
    """In a fresh interpreter, as `cdk synth` runs app.py: the kernel aws_cdk starts is kernel-node."""
    probe = (
        "import os, alchemy_stack, aws_cdk; "
        "print(os.environ.get('JSII_NODE')); print(os.environ.get('ALCHEMY_JSII_COMPILE_CACHE'))"
    )
    environment = {key: value for key, value in os.environ.items() if key not in ("JSII_NODE", CACHE_VARIABLE)}
    environment["XDG_CACHE_HOME"] = "/nonexistent/cache"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(kernel_compile_cache.__file__).parents[1],
        env={**environment, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == [str(KERNEL_NODE), "/nonexistent/cache/alchemy/jsii-compile-cache"]


def test_app_py_imports_the_stack_package_before_aws_cdk() -> None:
    lines = (Path(kernel_compile_cache.__file__).parents[1] / "app.py").read_text().splitlines()
    first = {
        package: next(i for i, line in enumerate(lines) if line.startswith(f"from {package} import"))
        for package in ("alchemy_stack", "aws_cdk", "cdk_nag")
    }
    assert first["alchemy_stack"] < first["aws_cdk"] < first["cdk_nag"]


def write_modules(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sibling.js").write_text(SIBLING)
    main = directory / "main.js"
    main.write_text(MAIN)
    return main


def run_node(script: Path, cache: Path | None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != CACHE_VARIABLE}
    if cache is not None:
        environment[CACHE_VARIABLE] = str(cache)
    return subprocess.run(
        ["node", "--require", str(PRELOAD), str(script)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def entries(cache: Path) -> dict[str, float]:
    """The cache's entries by name, with their modification times."""
    return {path.name: path.stat().st_mtime for path in cache.glob("*/*")}


def source_hash(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()  # a cache key, as the preload makes it


def test_modules_load_as_under_nodes_own_loader(tmp_path: Path) -> None:
    main = write_modules(tmp_path / "modules")
    plain = run_node(main, None)
    cold = run_node(main, tmp_path / "cache")
    warm = run_node(main, tmp_path / "cache")
    assert plain.returncode == 0, plain.stderr
    assert '"greeting":"hello from sibling.js"' in plain.stdout
    assert '"cached":true' in plain.stdout
    assert '"sameExports":true' in plain.stdout
    assert cold.stdout == warm.stdout == plain.stdout
    assert cold.stderr == warm.stderr == ""


def test_a_first_run_keeps_each_modules_code_by_its_source_and_the_node_version(tmp_path: Path) -> None:
    main = write_modules(tmp_path / "modules")
    result = run_node(main, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    (version_directory,) = (tmp_path / "cache").iterdir()
    node = subprocess.run(["node", "-p", "`${process.version}-${process.arch}`"], capture_output=True, text=True)
    assert version_directory.name == node.stdout.strip()
    assert set(entries(tmp_path / "cache")) == {source_hash(main), source_hash(main.with_name("sibling.js"))}
    assert version_directory.stat().st_mode & 0o077 == 0
    assert all(entry.stat().st_mode & 0o077 == 0 for entry in version_directory.iterdir())


def test_a_run_that_finds_every_module_cached_writes_nothing(tmp_path: Path) -> None:
    main = write_modules(tmp_path / "modules")
    run_node(main, tmp_path / "cache")
    before = entries(tmp_path / "cache")
    time.sleep(0.05)
    assert run_node(main, tmp_path / "cache").returncode == 0
    assert entries(tmp_path / "cache") == before


def test_an_entry_v8_rejects_is_compiled_afresh_and_replaced(tmp_path: Path) -> None:
    main = write_modules(tmp_path / "modules")
    run_node(main, tmp_path / "cache")
    (entry,) = (path for path in (tmp_path / "cache").glob("*/*") if path.name == source_hash(main))
    entry.write_bytes(b"not a code cache")

    result = run_node(main, tmp_path / "cache")

    assert result.returncode == 0, result.stderr
    assert '"greeting":"hello from sibling.js"' in result.stdout
    assert entry.read_bytes() != b"not a code cache"


def test_a_changed_module_gets_an_entry_of_its_own(tmp_path: Path) -> None:
    main = write_modules(tmp_path / "modules")
    run_node(main, tmp_path / "cache")
    sibling = main.with_name("sibling.js")
    sibling.write_text("exports.greeting = 'changed';\n")

    result = run_node(main, tmp_path / "cache")

    assert '"greeting":"changed"' in result.stdout
    assert source_hash(sibling) in entries(tmp_path / "cache")


def test_a_cache_others_can_write_to_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    main = write_modules(tmp_path / "modules")

    result = run_node(main, cache)

    assert result.returncode == 0, result.stderr
    assert '"greeting":"hello from sibling.js"' in result.stdout
    assert list(cache.iterdir()) == []


def test_a_syntax_error_is_reported_as_node_reports_it(tmp_path: Path) -> None:
    broken = tmp_path / "modules" / "broken.js"
    broken.parent.mkdir()
    broken.write_text("module.exports = {;\n")
    plain = run_node(broken, None)
    cached = run_node(broken, tmp_path / "cache")
    assert plain.returncode == cached.returncode == 1
    assert "SyntaxError: Unexpected token ';'" in cached.stderr
    assert f"{broken}:1" in cached.stderr


def test_a_run_that_adds_entries_removes_those_written_over_thirty_days_ago(tmp_path: Path) -> None:
    main = write_modules(tmp_path / "modules")
    run_node(main, tmp_path / "cache")
    (version_directory,) = (tmp_path / "cache").iterdir()
    stale, recent = version_directory / ("0" * 40), version_directory / ("1" * 40)
    for entry, age_days in ((stale, 31), (recent, 29)):
        entry.write_bytes(b"an entry")
        written = time.time() - age_days * 24 * 3600
        os.utime(entry, (written, written))
    main.with_name("sibling.js").write_text("exports.greeting = 'new';\n")

    run_node(main, tmp_path / "cache")

    assert not stale.exists()
    assert recent.exists()


def test_a_stack_trace_points_where_nodes_own_loader_points(tmp_path: Path) -> None:
    """Line 1 carries the module wrapper's text too; its columns still count from the module's own first
    character (a minified module is all line 1)."""
    thrower = tmp_path / "modules" / "thrower.js"
    thrower.parent.mkdir()
    thrower.write_text('const a = 1; function f() { throw new Error("x"); } f();\n')

    def frame(result: subprocess.CompletedProcess[str]) -> str:
        return next(line.strip() for line in result.stderr.splitlines() if line.strip().startswith("at f "))

    plain = frame(run_node(thrower, None))
    assert plain == f"at f ({thrower}:1:35)"
    assert frame(run_node(thrower, tmp_path / "cache")) == plain
    assert frame(run_node(thrower, tmp_path / "cache")) == plain
