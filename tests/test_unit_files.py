"""Placement of services/ units as fleet's [X-Fleet] section meant it, now at boot."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from alchemy_constructs.cloud_config import Unit
from alchemy_constructs.unit_files import (
    UnitFile,
    UnitFileError,
    place,
    place_all,
    read_unit_files,
    render_placeholders,
)
from alchemy_services.router import SHUTDOWN_GRACE_SECONDS
from alchemy_stack.settings import ROUTER_TIMEOUT_LIMIT_SECONDS

GLOBAL = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n"
TEMPLATE = "[Unit]\nDescription=x %i\n[Service]\nExecStart=/bin/true\n"


def test_global_unit_runs_on_every_node() -> None:
    assert place(UnitFile("hosts.service", GLOBAL), {}) == [
        Unit(name="hosts.service", content=GLOBAL, enable=True, command="start")
    ]


def test_template_unit_runs_the_configured_number_of_instances() -> None:
    placed = place(UnitFile("hello_world@.service", TEMPLATE), {"hello_world": 3})
    assert [unit.name for unit in placed] == [
        "hello_world@.service",
        "hello_world@1.service",
        "hello_world@2.service",
        "hello_world@3.service",
    ]
    assert placed[0] == Unit(name="hello_world@.service", content=TEMPLATE)
    assert all(unit.command == "start" and unit.enable for unit in placed[1:])


def test_template_unit_runs_once_without_a_count() -> None:
    assert [u.name for u in place(UnitFile("worker@.service", TEMPLATE), {})] == ["worker@.service", "worker@1.service"]


@pytest.mark.parametrize("conflict", ["%p@*.service", "router@*.service", "router@*"])
def test_conflicting_with_itself_limits_a_template_to_one_per_node(conflict: str) -> None:
    unit = UnitFile("router@.service", TEMPLATE + f"[X-Fleet]\nConflicts={conflict}\n")
    assert [u.name for u in place(unit, {"router": 5})] == ["router@.service", "router@1.service"]


def test_unit_fleet_would_put_on_one_machine_is_refused() -> None:
    with pytest.raises(UnitFileError, match=r"single.service: fleet would run this unit on one machine"):
        place(UnitFile("single.service", "[Service]\nExecStart=/bin/true\n"), {})


def test_zero_instances_are_refused() -> None:
    with pytest.raises(UnitFileError, match=r"hello_world@.service: instance count must be at least 1; received 0"):
        place(UnitFile("hello_world@.service", TEMPLATE), {"hello_world": 0})


def test_instance_count_for_a_missing_template_is_refused() -> None:
    with pytest.raises(UnitFileError, match=r"instance counts given for helo_world, which no template unit defines"):
        place_all([UnitFile("hello_world@.service", TEMPLATE)], {"helo_world": 2})


def test_placeholders_are_filled() -> None:
    assert render_placeholders("a.service", "Environment=IMAGE={{ image }}\n", {"image": "x:1"}) == (
        "Environment=IMAGE=x:1\n"
    )


def test_unfilled_placeholder_is_refused_with_its_name() -> None:
    with pytest.raises(UnitFileError, match=r"a.service: no value for placeholder\(s\) image; known: other"):
        render_placeholders("a.service", "IMAGE={{image}}", {"other": "x"})


def test_a_unit_added_to_the_directory_is_placed_with_no_code_change(tmp_path: Path) -> None:
    (tmp_path / "metrics.service").write_text(GLOBAL)
    (tmp_path / "hello_world@.service").write_text(TEMPLATE)
    names = [unit.name for unit in place_all(read_unit_files(tmp_path, {}), {"hello_world": 2})]
    assert "metrics.service" in names
    assert names.count("hello_world@2.service") == 1


def test_repeated_keys_are_all_kept() -> None:
    unit = UnitFile("a.service", "[X-Fleet]\nConflicts=a\nConflicts=b\n")
    assert unit.section("X-Fleet") == {"Conflicts": ["a", "b"]}


def test_a_stopping_router_gets_the_time_to_finish_its_longest_request(tmp_path: Path) -> None:
    """docker stop waits out the router's drain (its request timeout and grace), and systemd waits out docker,
    whatever timeout the settings allow: run with the longest, the stop line gives docker more than the drain."""
    unit = (Path(__file__).resolve().parent.parent / "services" / "router@.service").read_text()
    (stop,) = re.findall(r"^ExecStop=(.*)$", unit, re.MULTILINE)
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "args"}\n')
    docker.chmod(0o755)
    # systemd's own unescaping of "$$", then the line as systemd runs it.
    command = shlex.split(stop.replace("$$", "$").replace("/usr/bin/docker", str(docker)))
    longest = ROUTER_TIMEOUT_LIMIT_SECONDS
    subprocess.run(command, env={"ROUTER_TIMEOUT_SECONDS": str(longest), "NAME": "router_1"}, check=True)
    args = (tmp_path / "args").read_text().split()
    assert args[:2] == ["stop", "--time"]
    assert args[3:] == ["router_1"]
    assert int(args[2]) > longest + SHUTDOWN_GRACE_SECONDS
    (stop_timeout,) = re.findall(r"^TimeoutStopSec=(\d+)s$", unit, re.MULTILINE)
    assert int(stop_timeout) > int(args[2])
