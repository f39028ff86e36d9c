"""Times `cdk synth` of this project against an empty CDK app, and the test suite.

Most of a `cdk synth` is fixed cost: starting node, the CLI, Python and the jsii runtime. Timing an empty app
under the same CLI, flags and interpreter separates that fixed cost from what the project itself adds, so the
ratio says whether the project's own synth is cheap (target: at most 1.25 times the empty app). The test suite
is timed too, since it synthesizes the stack many times over (target: at most 60 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Not resolved: the venv's python is a symlink, and following it would leave the venv behind.
PYTHON = REPO / ".venv" / "bin" / "python"
PYTEST = REPO / ".venv" / "bin" / "pytest"
CDK = REPO / "node_modules" / ".bin" / "cdk"

RATIO_TARGET = 1.25
TESTS_TARGET_S = 60.0
TAIL_LINES = 30
LABEL_WIDTH = 22

# One placeholder resource, because with the project's `validateAgainstDefaultRules` flag a stack without any
# resources fails synth; a wait condition handle has no properties and costs next to nothing to synthesize.
EMPTY_APP = """\
from aws_cdk import App, CfnWaitConditionHandle, Stack

app = App()
stack = Stack(app, "EmptyStack")
CfnWaitConditionHandle(stack, "Placeholder")
app.synth()
"""


class CommandError(Exception):
    """A benchmarked command exited non-zero; carries what it printed so the failure can be shown."""

    def __init__(self, command: list[str], output: str) -> None:
        super().__init__(shlex.join(command))
        self.output = output


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=positive_int, default=5, help="measured synth runs per app (default: 5)")
    parser.add_argument("--skip-tests", action="store_true", help="do not time the test suite")
    return parser.parse_args(argv)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Without it jsii prints a node-version warning on every run, which is noise rather than signal here.
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    return env


def run(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Runs a command to completion and returns its wall time in seconds."""
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, cwd=cwd, env=child_env(), capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as error:
        # pytest reports failures on stdout, the CDK CLI on stderr: show whichever has something to say.
        output = error.stderr if error.stderr and error.stderr.strip() else error.stdout
        raise CommandError(command, output or "") from error
    return time.perf_counter() - start, completed


def median_synth(cwd: Path, output_dir: Path, runs: int, *flags: str) -> float:
    command = [str(CDK), "synth", "--quiet", "--output", str(output_dir), *flags]
    # The first run pays for cold disk caches, so it is left out of the median.
    run(command, cwd)
    return statistics.median(run(command, cwd)[0] for _ in range(runs))


def empty_app_config(project_config: dict[str, Any]) -> dict[str, Any]:
    """cdk.json for the empty app: the project's CLI settings and feature flags, but the empty app to run."""
    project_context: dict[str, Any] = project_config.get("context", {})
    context = {
        key: value
        for key, value in project_context.items()
        # The project's own settings (cluster_name, node_count, ...) mean nothing to the empty app.
        if key == "cli-telemetry" or key.startswith("@aws-cdk")
    }
    config: dict[str, Any] = {"app": f"{shlex.quote(str(PYTHON))} app.py"}
    for key in ("versionReporting", "notices"):
        if key in project_config:
            config[key] = project_config[key]
    config["context"] = context
    return config


def write_empty_app(directory: Path) -> None:
    project_config = json.loads((REPO / "cdk.json").read_text(encoding="utf-8"))
    directory.mkdir()
    (directory / "app.py").write_text(EMPTY_APP, encoding="utf-8")
    (directory / "cdk.json").write_text(json.dumps(empty_app_config(project_config), indent=2), encoding="utf-8")


def pytest_summary(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else "(no summary)"


def row(label: str, value: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{value}"


def bench(runs: int, skip_tests: bool, scratch: Path) -> list[str]:
    empty_dir = scratch / "empty-app"
    write_empty_app(empty_dir)

    # Both apps synthesize outside the repo so the project's cdk.out is left as it was.
    project_s = median_synth(REPO, scratch / "project.out", runs)
    empty_s = median_synth(empty_dir, scratch / "empty.out", runs)
    # The project turns CDK's built-in template validation off (cfn-lint runs in the tests
    # instead); an empty app without it shows what the project itself costs on top.
    bare_s = median_synth(empty_dir, scratch / "bare.out", runs, "--no-validation")
    ratio = project_s / empty_s

    lines = [
        row("cdk synth (project)", f"median of {runs}: {project_s:.2f} s"),
        row("cdk synth (empty app)", f"median of {runs}: {empty_s:.2f} s"),
        row("ratio", f"{ratio:.2f} (target <= {RATIO_TARGET:g})"),
        row("empty, no validation", f"median of {runs}: {bare_s:.2f} s (project / this: {project_s / bare_s:.2f})"),
    ]
    if not skip_tests:
        # no:cacheprovider keeps the timed run from writing .pytest_cache into the repo.
        # The two runs of `make test`: the suite on two workers, then the node tests alone.
        for label, args in (("test suite", ["--ignore=tests/node"]), ("node tests", ["-n", "0", "tests/node"])):
            tests_s, completed = run([str(PYTEST), "-q", "-p", "no:cacheprovider", *args], REPO)
            summary = pytest_summary(completed.stdout)
            lines.append(row(label, f"{tests_s:.1f} s (target <= {TESTS_TARGET_S:g} s): {summary}"))
    return lines


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        lines = bench(args.runs, args.skip_tests, scratch)
    except CommandError as error:
        tail = "\n".join(error.output.splitlines()[-TAIL_LINES:])
        print(f"error: command failed: {error}\n{tail}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
