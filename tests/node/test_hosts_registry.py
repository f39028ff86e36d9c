"""hosts-registry: every node's hosts file lists every live node, and a dead node drops out after the TTL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.harness import SCRIPTS, FirstBoot, Node, base_environment, etcdctl, wait_for

KEPT = "127.0.0.1 localhost\n# a line of the image's own\n"
TTL = 6
"""Lease TTL of the test registries (30 s on a node). A registry renews every third of it. At 2 s (a renewal a
second), with the three suites of `make test` on both cores, a registry was twice in six runs never listed by
the other; a late renewal (the lease expired, the entry dropped) fits what was seen, not caught in the act."""


class Registry:
    """One node's hosts-registry, in its own process group like a systemd unit's cgroup."""

    def __init__(self, node: Node, name: str, hosts_file: Path, ttl: int = TTL, **extra: str) -> None:
        self.name, self.hosts_file = name, hosts_file
        self.log_file = hosts_file.with_name(hosts_file.name + ".log")
        hosts_file.write_text(KEPT)
        environment = base_environment(
            {
                "HOSTS_TTL": str(ttl),
                "HOSTS_FILE": str(hosts_file),
                "HOSTS_NAME": name,
                "PRIVATE_IP": node.ip,
                "HOSTS_WATCH_CONTAINER": "",
                # Its FIFO beside the test's files: a registry killed on purpose cannot remove it.
                "TMPDIR": str(hosts_file.parent),
                **extra,
            }
        )
        self.process = subprocess.Popen(
            [str(SCRIPTS / "hosts-registry")],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=self.log_file.open("w"),
            text=True,
            start_new_session=True,
        )

    def lists(self, name: str) -> bool:
        return any(line.split()[1:] == [name] for line in self.block())

    def block(self) -> list[str]:
        lines = self.hosts_file.read_text().splitlines()
        if "# BEGIN alchemy-hosts" not in lines:
            return []
        return lines[lines.index("# BEGIN alchemy-hosts") + 1 : lines.index("# END alchemy-hosts")]

    def kill(self, sig: signal.Signals) -> None:
        """`signal` to the whole group, as systemd does to a unit; SIGKILL leaves no chance to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=10)

    def log(self) -> str:
        """What the registry has logged so far, without stopping it."""
        return self.log_file.read_text() if self.log_file.exists() else ""

    def stderr(self) -> str:
        self.kill(signal.SIGKILL)
        return self.log()


LISTED_WITHIN = 10
"""Seconds for a started registry to be listed by both (about a second here)."""


def wait_until_listed(registries: list[Registry], names: list[str]) -> None:
    for registry in registries:
        for name in names:
            wait_for(
                f"{registry.name} to list {name}",
                lambda r=registry, n=name: r.lists(n),  # type: ignore[misc]
                LISTED_WITHIN,
                details=lambda: "\n".join(f"{r.name}: {r.hosts_file.read_text()}{r.log()}" for r in registries),
            )


@pytest.fixture
def pair(shared_cluster: FirstBoot, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Registry]]:
    """Registries on two nodes of the cluster, each with its own hosts file, both listed by both."""
    suffix = request.node.name[-20:].replace("_", "-")
    nodes = shared_cluster.nodes
    registries = [
        Registry(nodes[0], f"a-{suffix}", tmp_path / "hosts-a"),
        Registry(nodes[1], f"b-{suffix}", tmp_path / "hosts-b"),
    ]
    try:
        wait_until_listed(registries, [registry.name for registry in registries])
        yield registries
    finally:
        for registry in registries:
            registry.kill(signal.SIGKILL)


def test_both_hosts_files_list_both_nodes(pair: list[Registry], shared_cluster: FirstBoot) -> None:
    a, b = pair
    for registry in pair:
        assert f"{shared_cluster.nodes[0].ip} {a.name}" in registry.block()
        assert f"{shared_cluster.nodes[1].ip} {b.name}" in registry.block()


def test_lines_outside_the_markers_are_kept(pair: list[Registry]) -> None:
    a, _ = pair
    assert a.hosts_file.read_text().startswith(KEPT)


def test_node_killed_without_cleanup_drops_out_after_the_ttl(pair: list[Registry]) -> None:
    a, b = pair
    b.kill(signal.SIGKILL)
    killed = time.monotonic()

    wait_for(f"{b.name} to drop out of {a.name}'s hosts file", lambda: not a.lists(b.name), TTL + 5)

    assert time.monotonic() - killed > 0.5, "gone before its lease could have expired"
    assert a.lists(a.name)


def test_clean_stop_drops_the_entry_at_once(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    a = Registry(shared_cluster.nodes[0], "stays", tmp_path / "hosts-a", ttl=60)
    b = Registry(shared_cluster.nodes[1], "stops", tmp_path / "hosts-b", ttl=60)
    try:
        wait_until_listed([a], ["stays", "stops"])

        b.kill(signal.SIGTERM)

        assert b.process.returncode == 0
        wait_for("the stopped node to drop out well before its 60 s TTL", lambda: not a.lists("stops"), 5)
    finally:
        a.kill(signal.SIGKILL)
        b.kill(signal.SIGKILL)


def test_registry_exits_non_zero_when_its_lease_is_gone(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    node = shared_cluster.nodes[0]
    registry = Registry(node, "loses-its-lease", tmp_path / "hosts")
    try:
        wait_until_listed([registry], ["loses-its-lease"])
        fields = etcdctl(node.endpoint, "get", "/alchemy/hosts/loses-its-lease", "-w", "fields").stdout
        (lease,) = [int(line.split(" : ")[1]) for line in fields.splitlines() if line.startswith('"Lease"')]

        assert etcdctl(node.endpoint, "lease", "revoke", f"{lease:x}").returncode == 0

        registry.process.wait(timeout=TTL + 5)
        assert registry.process.returncode != 0
        assert "could not be kept alive" in registry.stderr()
    finally:
        registry.kill(signal.SIGKILL)


def docker_recorder(tmp_path: Path) -> tuple[str, Path]:
    """PATH with a `docker` that only records its arguments, one call a line (etcdctl itself runs natively)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "docker-calls"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >>{calls}\n')
    (bin_dir / "docker").chmod(0o755)
    return f"{bin_dir}:{base_environment()['PATH']}", calls


def test_registry_that_loses_its_lease_leaves_no_watch_behind(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    node = shared_cluster.nodes[0]
    path, calls = docker_recorder(tmp_path)
    registry = Registry(node, "no-leak", tmp_path / "hosts", PATH=path, HOSTS_WATCH_CONTAINER="hosts-watch-test")
    try:
        wait_until_listed([registry], ["no-leak"])
        fields = etcdctl(node.endpoint, "get", "/alchemy/hosts/no-leak", "-w", "fields").stdout
        (lease,) = [int(line.split(" : ")[1]) for line in fields.splitlines() if line.startswith('"Lease"')]
        assert etcdctl(node.endpoint, "lease", "revoke", f"{lease:x}").returncode == 0
        registry.process.wait(timeout=TTL + 10)

        wait_for(
            "the watch to end with the registry",
            lambda: not group_alive(registry.process.pid),
            5,
            details=lambda: processes_of(registry.process.pid),
        )
        assert calls.read_text().splitlines() == ["rm --force hosts-watch-test"] * 2
    finally:
        registry.kill(signal.SIGKILL)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def processes_of(group: int) -> str:
    listing = subprocess.run(["ps", "-o", "pid,cmd", "-g", str(group)], capture_output=True, text=True, check=False)
    return listing.stdout
