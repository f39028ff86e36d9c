"""The README's local loop, through the entry points the Makefile calls, as a person runs it.

``make local-deploy`` / ``local-diff`` / ``local-destroy`` run ``python -m alchemy_tools.local_deploy
up|diff|down``; this runs exactly those commands in order, each a new process that must find the
emulator the first one started: up -> diff -> blocked diff -> up -> diff -> down. The run gets its
own state directory, so it never meets a person's emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from alchemy_tools import local_aws
from alchemy_tools.local_deploy import ROOT

pytestmark = pytest.mark.integration

STEP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    returncode: int
    output: str


@dataclass(frozen=True)
class Loop:
    steps: dict[str, Step]
    state_dir: Path
    recorded: local_aws.BackgroundState | None
    """The emulator the first ``up`` recorded."""


def run(state_dir: Path, *args: str) -> Step:
    environment = {**os.environ, local_aws.STATE_DIR_VARIABLE: str(state_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "alchemy_tools.local_deploy", *args],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    return Step(tuple(args), done.returncode, done.stdout)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    state_dir = tmp_path_factory.mktemp("readme-loop")
    steps: dict[str, Step] = {}
    recorded = None
    try:
        steps["up"] = run(state_dir, "up")
        os.environ[local_aws.STATE_DIR_VARIABLE] = str(state_dir)
        recorded = local_aws.read_state()
        steps["diff"] = run(state_dir, "diff", "node_count=4")
        steps["blocked diff"] = run(state_dir, "diff", "vpc_cidr=10.1.0.0/16")
        steps["up again"] = run(state_dir, "up", "node_count=4")
        steps["diff after up"] = run(state_dir, "diff", "node_count=4")
        steps["down"] = run(state_dir, "down", "node_count=4")
        steps["down again"] = run(state_dir, "down")
    finally:
        # Whatever failed above, the emulator this test started does not outlive it.
        os.environ[local_aws.STATE_DIR_VARIABLE] = str(state_dir)
        local_aws.stop_background()
        os.environ.pop(local_aws.STATE_DIR_VARIABLE)
    return Loop(steps, state_dir, recorded)


def test_every_step_but_the_blocked_diff_succeeds(loop: Loop) -> None:
    assert {name: step.returncode for name, step in loop.steps.items()} == {
        "up": 0,
        "diff": 0,
        "blocked diff": 1,
        "up again": 0,
        "diff after up": 0,
        "down": 0,
        "down again": 0,
    }


def test_the_first_up_starts_the_emulator(loop: Loop) -> None:
    assert "Local AWS emulator (moto) started on" in loop.steps["up"].output


def test_the_diff_finds_the_running_emulator(loop: Loop) -> None:
    assert "no local emulator is running" not in loop.steps["diff"].output


def test_the_diff_shows_the_comment_with_the_node_replacement(loop: Loop) -> None:
    assert "**Every node will be replaced, one at a time**" in loop.steps["diff"].output


def test_a_blocked_diff_says_why(loop: Loop) -> None:
    assert "local-diff: blocked: destructive changes" in loop.steps["blocked diff"].output


def test_the_second_up_reuses_the_emulator(loop: Loop) -> None:
    assert loop.recorded is not None
    assert f"found running on {loop.recorded.endpoint}" in loop.steps["up again"].output


def test_the_second_up_updates_the_stack(loop: Loop) -> None:
    assert "Stack alchemy: UPDATE_COMPLETE" in loop.steps["up again"].output


def test_after_the_update_the_diff_is_empty(loop: Loop) -> None:
    assert "There were no differences" in loop.steps["diff after up"].output


def test_down_finds_nothing_of_the_stack_left(loop: Loop) -> None:
    assert "Checked after destroy: nothing of the stack remains." in loop.steps["down"].output


def test_down_names_what_moto_never_creates(loop: Loop) -> None:
    assert "Never created by moto, so not proven gone: AWS::SecretsManager::Secret" in loop.steps["down"].output


def test_down_stops_the_emulator_it_started(loop: Loop) -> None:
    assert loop.recorded is not None
    assert local_aws.is_emulator_process(loop.recorded.pid, loop.recorded.port) is False


def test_down_forgets_the_emulator(loop: Loop) -> None:
    assert not (loop.state_dir / "server.json").exists()


def test_a_second_down_has_nothing_to_tear_down(loop: Loop) -> None:
    assert "No local emulator is running; nothing to tear down." in loop.steps["down again"].output
