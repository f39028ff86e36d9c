"""Times `cdk synth` of this project against an empty CDK app and `make test`; sizes the node's boot payload.

Most of a `cdk synth` is fixed cost: starting node, the CLI, Python and the jsii runtime. Timing an empty app
under the same CLI, flags and interpreter separates that fixed cost from what the project itself adds, so the
ratio says whether the project's own synth is cheap. `make test` is timed as a developer runs it (the unit
and node suites side by side), with each suite's own wall time from its log, and the CPU time it used
divided by the cores: no scheduling of the two suites can finish sooner than that. The sizes: the node bundle
(every gzipped file asset the synth staged) and each user data as EC2 would receive it, its deploy-time
values (``Ref``, ``Fn::GetAtt``, ...) replaced by strings of a typical length. Every number is printed with
its target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Not resolved: the venv's python is a symlink, and following it would leave the venv behind.
PYTHON = REPO / ".venv" / "bin" / "python"
CDK = REPO / "node_modules" / ".bin" / "cdk"
TEST_LOGS = REPO / ".test-logs"
"""Where `make test` writes each suite's output (see the Makefile)."""

RATIO_TARGET = 1.6
REFERENCE_LOOP = 10_000_000
MAKE_TEST_TARGET_S = 45.0
USER_DATA_TARGET_BYTES = 2 * 1024
USER_DATA_LIMIT_BYTES = 16 * 1024
"""EC2's limit on user data, before base64."""
TAIL_LINES = 30
LABEL_WIDTH = 32

TYPICAL_VALUES = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::URLSuffix": "amazonaws.com"}
"""Deploy-time values of known length; any other token counts as :data:`TYPICAL_TOKEN_LENGTH` characters."""
TYPICAL_TOKEN_LENGTH = 64
"""An asset bucket name or a hashed object key: the longest values a user data typically carries."""
PYTEST_WALL = re.compile(r" in (\d+(?:\.\d+)?)s")

# One placeholder resource, because with the project's `validateAgainstDefaultRules` flag a stack without any
# resources fails synth; a wait condition handle has no properties and costs next to nothing to synthesize.
# Built-in template validation off, as app.py has it: the same flags, so the ratio is what the project adds.
EMPTY_APP = """\
from aws_cdk import App, CfnWaitConditionHandle, Stack

app = App(builtin_cloud_formation_validation=False)
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
    parser.add_argument("--skip-tests", action="store_true", help="do not time `make test`")
    return parser.parse_args(argv)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Without it jsii prints a node-version warning on every run, which is noise rather than signal here.
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    return env


def run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Runs a command to completion (``env`` added to the environment) and returns its wall time in seconds."""
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            command, cwd=cwd, env={**child_env(), **(env or {})}, capture_output=True, text=True, check=True
        )
    except subprocess.CalledProcessError as error:
        # pytest reports failures on stdout, the CDK CLI on stderr: show whichever has something to say.
        output = error.stderr if error.stderr and error.stderr.strip() else error.stdout
        raise CommandError(command, output or "") from error
    return time.perf_counter() - start, completed


@dataclass(frozen=True)
class SynthTiming:
    """Medians of one app's measured synths: wall time, and the CPU time of the CLI and everything it ran."""

    wall_s: float
    cpu_s: float


def synth_command(output_dir: Path) -> list[str]:
    return [str(CDK), "synth", "--quiet", "--output", str(output_dir)]


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Runs a command to completion; its wall time and the CPU time (user and system) of every process it ran
    and reaped (a daemon nobody waits for is not counted, so the CPU time is a lower bound)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_s, _ = run(command, cwd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall_s, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interleaved_synths(apps: dict[str, tuple[Path, Path, dict[str, str] | None]], runs: int) -> dict[str, SynthTiming]:
    """Times each app's synth ``runs`` times, one round of every app after another, so that a machine that
    slows down or speeds up meanwhile weighs on all of them alike. A first round, which pays for cold caches
    (the disk's, and the kernel compile cache's after a change), is left out."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
    for round_ in range(runs + 1):
        for name, (cwd, output_dir, env) in apps.items():
            sample = timed(synth_command(output_dir), cwd, env)
            if round_:
                samples[name].append(sample)
    return {
        name: SynthTiming(statistics.median(w for w, _ in timings), statistics.median(c for _, c in timings))
        for name, timings in samples.items()
    }


def machine_reference_s() -> float:
    """Seconds this machine takes for a fixed pure-Python loop (best of three): the same code's numbers from
    different days or machines compare after dividing by it."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for value in range(REFERENCE_LOOP):
            total += value
        best = min(best, time.perf_counter() - start)
    return best


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


def resolved(value: Any) -> str:
    """A template value as text, each deploy-time token replaced by a value of typical length."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(resolved(item) for item in value)
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Fn::Join":
            separator, items = argument
            return str(separator).join(resolved(item) for item in items)
        if function == "Fn::Base64":
            return resolved(argument)
        if function == "Ref" and argument in TYPICAL_VALUES:
            return TYPICAL_VALUES[argument]
    return "x" * TYPICAL_TOKEN_LENGTH


def user_data(template: dict[str, Any]) -> dict[str, Any]:
    """Every ``UserData`` in the template, by the logical id of the resource that holds it, wherever it sits."""
    found: dict[str, Any] = {}

    def visit(logical_id: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "UserData":
                    found[logical_id] = item
                else:
                    visit(logical_id, item)
        elif isinstance(value, list):
            for item in value:
                visit(logical_id, item)

    for logical_id, definition in template.get("Resources", {}).items():
        visit(logical_id, definition.get("Properties", {}))
    return found


def size_rows(output: Path) -> list[str]:
    """The staged bundle's size and each user data's, from a synthesized cloud assembly."""
    rows = []
    for archive in sorted(output.glob("asset.*")):
        if archive.is_file() and archive.read_bytes()[:2] == b"\x1f\x8b":
            rows.append(row("node bundle", f"{archive.stat().st_size / 1024:.1f} KB gzipped ({archive.name[:18]}...)"))
    for template_path in sorted(output.glob("*.template.json")):
        template = json.loads(template_path.read_text(encoding="utf-8"))
        for logical_id, value in user_data(template).items():
            size = len(resolved(value).encode("utf-8"))
            rows.append(
                row(
                    "user data",
                    f"{size / 1024:.2f} KB (target <= {USER_DATA_TARGET_BYTES / 1024:g} KB, EC2 allows "
                    f"{USER_DATA_LIMIT_BYTES / 1024:g} KB): {logical_id}",
                )
            )
    return rows


def suite_wall(log: Path) -> str:
    """The wall time pytest reports at the end of a suite's log, or why there is none."""
    if not log.exists():
        return "(no log)"
    walls = PYTEST_WALL.findall(log.read_text(encoding="utf-8", errors="replace"))
    return f"{float(walls[-1]):.1f} s" if walls else "(no pytest summary)"


def bench(runs: int, skip_tests: bool, scratch: Path) -> list[str]:
    empty_dir = scratch / "empty-app"
    write_empty_app(empty_dir)

    # Every app synthesizes outside the repo so the project's cdk.out is left as it was. The project runs with
    # and without the jsii kernel's compile cache (JSII_NODE=node is the kernel as jsii starts it by default).
    timings = interleaved_synths(
        {
            "project": (REPO, scratch / "project.out", None),
            "project, no cache": (REPO, scratch / "uncached.out", {"JSII_NODE": "node"}),
            "empty app": (empty_dir, scratch / "empty.out", None),
        },
        runs,
    )
    empty = timings["empty app"]
    lines = [
        row(f"cdk synth ({name})", f"median of {runs}: {timing.wall_s:.2f} s wall, {timing.cpu_s:.2f} s CPU")
        for name, timing in timings.items()
    ]
    lines += [
        row("ratio", f"{timings['project'].wall_s / empty.wall_s:.2f} (target <= {RATIO_TARGET:g})"),
        row("  without the cache", f"{timings['project, no cache'].wall_s / empty.wall_s:.2f}"),
        *size_rows(scratch / "project.out"),
    ]
    if not skip_tests:
        # `make test` as a developer runs it: the two suites side by side, each writing its own log.
        tests_s, tests_cpu_s = timed(["make", "--no-print-directory", "test"], REPO)
        cores = len(os.sched_getaffinity(0))
        lines += [
            row("make test", f"{tests_s:.1f} s wall (target <= {MAKE_TEST_TARGET_S:g} s)"),
            # The wall time the run would take if it kept every core busy throughout.
            row("  CPU", f"{tests_cpu_s:.1f} s: {tests_cpu_s / cores:.1f} s of wall at the least on {cores} cores"),
            row(
                "  unit suite", f"{suite_wall(TEST_LOGS / 'unit.log')}: {pytest_summary(read(TEST_LOGS / 'unit.log'))}"
            ),
            row(
                "  node suite", f"{suite_wall(TEST_LOGS / 'node.log')}: {pytest_summary(read(TEST_LOGS / 'node.log'))}"
            ),
        ]
    lines.append(row("machine reference", f"{machine_reference_s():.2f} s for {REFERENCE_LOOP:,} additions in Python"))
    lines.append(
        row("load average", " ".join(f"{load:.2f}" for load in os.getloadavg()) + " (1, 5, 15 min) at the end")
    )
    return lines


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


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
