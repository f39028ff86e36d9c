"""One booted node: an overlay of the cached root, a systemd-nspawn container in its own namespace.

The container boots Debian 13's systemd as PID 1 with the harness's pieces added to its root: the
cloud-config applier (run at boot as coreos-cloudinit is), the docker shim and a stand-in docker.service,
the harness's CA, /etc/hosts naming the regional AWS endpoints, and the project's services read-only.
Its journal is persistent, so the timeline of a node that was killed can still be read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.boot.harness.cloud import ENDPOINT_NAMES, REGION

HERE = Path(__file__).resolve().parent.parent
NODE_FILES = HERE / "node_files"
REPOSITORY = HERE.parent.parent
COREOS_CLOUDINIT = "ALCHEMY_BOOT_COREOS_CLOUDINIT"
"""Environment variable naming a Flatcar ``coreos-cloudinit`` binary to apply the user data with, as Flatcar's
EC2 OEM does, instead of the harness's own applier (``node_files/cloud-config-apply``)."""
COREOS_CLOUDINIT_PATH = "/usr/lib/alchemy-boot/coreos-cloudinit"
OWN_APPLIER_PATH = "/usr/lib/alchemy-boot/cloud-config-apply"


def cloudinit_binary(environment: dict[str, str] | None = None) -> Path | None:
    """The coreos-cloudinit binary the environment names, checked to be an executable file; None: none named."""
    named = (os.environ if environment is None else environment).get(COREOS_CLOUDINIT, "")
    if not named:
        return None
    binary = Path(named)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ValueError(f"{COREOS_CLOUDINIT}={named}: not an executable file")
    return binary


def with_applier(unit: str, binary: Path | None) -> str:
    """The applier unit's text with its ExecStart for ``binary`` (see :func:`applier_exec_start`)."""
    lines = [
        f"ExecStart={applier_exec_start(binary)}" if line.startswith("ExecStart=") else line
        for line in unit.split("\n")
    ]
    return "\n".join(lines)


def applier_exec_start(binary: Path | None) -> str:
    """The applier unit's command: Flatcar's, as its EC2 OEM runs it (metadata at 169.254.169.254, IMDSv2 when
    the service requires tokens), when a binary is given; else the harness's own applier."""
    return f"{COREOS_CLOUDINIT_PATH} --oem=ec2-compat" if binary is not None else OWN_APPLIER_PATH


TIMELINE_UNITS = (
    "alchemy-boot-cloudinit.service",
    "alchemy-files.service",
    "alchemy-secrets.service",
    "etcd-membership.service",
    "etcd.service",
    "hosts.service",
    "rabbitmq.service",
    "router@1.service",
    "hello_world@1.service",
    "alchemy-ready.service",
    "etcd-auth.service",
    "rabbitmq-users.service",
    "alchemy-lifecycle.service",
)


def run(*command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Node:
    """A node (one instance) of the cluster; ``boot`` can run again after ``stop`` (a reboot)."""

    instance_id: str
    ip: str
    namespace: str
    directory: Path
    root: Path
    extra_binds: list[tuple[Path, str]] = field(default_factory=list)
    cloudinit: Path | None = None
    """A coreos-cloudinit binary to apply the user data with (bound in by the caller), or the harness's applier."""
    process: subprocess.Popen[bytes] | None = None
    leader: int = 0
    boots: list[float] = field(default_factory=list)
    """Wall-clock start of each boot."""

    @property
    def hostname(self) -> str:
        return f"ip-{self.ip.replace('.', '-')}"

    @property
    def merged(self) -> Path:
        return self.directory / "merged"

    def prepare(self, *, images: dict[str, str], aws_environment: dict[str, str], ca: Path, gateway: str) -> None:
        """The node's own writable layer over the cached root, with the harness's files in it."""
        for part in ("upper", "work", "merged"):
            (self.directory / part).mkdir(parents=True, exist_ok=True)
        run(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={self.root},upperdir={self.directory / 'upper'},workdir={self.directory / 'work'}",
            str(self.merged),
        )
        m = self.merged
        config = m / "etc/alchemy-boot"
        (config / "faults").mkdir(parents=True, exist_ok=True)
        (config / "images.json").write_text(json.dumps(images, indent=1))
        (config / "aws.env").write_text("".join(f"{k}={v}\n" for k, v in aws_environment.items()))
        (config / "aws-config").write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
        for name, target, mode in (
            ("docker", m / "usr/bin/docker", 0o755),
            ("cloud-config-apply", m / "usr/lib/alchemy-boot/cloud-config-apply", 0o755),
            ("alchemy-boot-cloudinit.service", m / "etc/systemd/system/alchemy-boot-cloudinit.service", 0o644),
            ("docker.service", m / "etc/systemd/system/docker.service", 0o644),
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(NODE_FILES / name, target)
            target.chmod(mode)
        applier = m / "etc/systemd/system/alchemy-boot-cloudinit.service"
        applier.write_text(with_applier(applier.read_text(), self.cloudinit))
        wants = m / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "alchemy-boot-cloudinit.service").symlink_to("/etc/systemd/system/alchemy-boot-cloudinit.service")
        # Flatcar's applier refuses a cloud-config without this file; ours does not read it.
        (m / "usr/share/coreos").mkdir(parents=True, exist_ok=True)
        (m / "usr/share/coreos/update.conf").write_text("GROUP=stable\n")
        (m / "etc/hostname").write_text(f"{self.hostname}\n")
        (m / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        (m / "var/log/journal").mkdir(parents=True, exist_ok=True)
        names = " ".join(f"{service}.{REGION}.amazonaws.com" for service in ENDPOINT_NAMES)
        (m / "etc/hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n{gateway} {names}\n")
        # No name server here, and it must fail at once as the VPC's resolver answers at once: the host's
        # resolv.conf (which nspawn would copy) names a server the namespace cannot reach, so every lookup
        # /etc/hosts does not answer (the AWS names' IPv6 addresses, asked by RabbitMQ's AWS client) waited
        # 10 s, and peer discovery took 47-92 s instead of 4. Nothing listens on the node's port 53: refused.
        resolv = m / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        # Trusted as update-ca-certificates would (appended to the bundle), without its slow rehash.
        shutil.copyfile(ca, m / "usr/local/share/ca-certificates/alchemy-boot.crt")
        bundle = m / "etc/ssl/certs/ca-certificates.crt"
        bundle.write_bytes(bundle.read_bytes() + ca.read_bytes())
        for part in ("opt/alchemy-boot/services", "opt/alchemy-boot/pydeps"):
            (m / part).mkdir(parents=True, exist_ok=True)

    def boot(self) -> None:
        binds = [f"--bind-ro={source}:{target}" for source, target in self.extra_binds]
        log = (self.directory / f"console-{len(self.boots)}.log").open("wb")
        self.boots.append(time.time())
        self.process = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "-D",
                str(self.merged),
                f"--network-namespace-path=/run/netns/{self.namespace}",
                "--register=no",
                "--keep-unit",
                "--boot",
                f"--machine={self.namespace}",
                f"--hostname={self.hostname}",
                "--console=pipe",
                "--link-journal=no",
                "--resolv-conf=off",
                *binds,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            try:
                pids = children.read_text().split()
            except OSError:
                pids = []
            for pid in pids:
                # The container's PID 1 (nspawn's short-lived outer child is not).
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
                if len(nspid) == 2 and nspid[-1] == "1":
                    self.leader = int(pid)
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.hostname}: systemd-nspawn exited {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.hostname}: no container leader after 30 s")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def sh(self, script: str, *, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A shell command inside the running container (all its namespaces)."""
        return run("nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", script, check=check, timeout=timeout)

    def unit_state(self, unit: str) -> str:
        return self.sh(f"systemctl is-active {unit}").stdout.strip()

    def reboot(self, timeout: float = 180) -> None:
        """A clean reboot: systemd stops every unit (ExecStop runs), then the container starts again."""
        self.shutdown(timeout=timeout)
        self.boot()

    def shutdown(self, timeout: float = 180) -> None:
        """A clean poweroff (as EC2's stop or terminate gives the OS)."""
        if not self.running:
            return
        os.kill(self.leader, signal.SIGRTMIN + 4)  # systemd: poweroff
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Gone without warning: PID 1 of the container is killed and with it every process in it."""
        if not self.running:
            return
        self.send_kill()
        assert self.process is not None
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def send_kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGKILL)

    def journal(self) -> list[dict[str, Any]]:
        """The node's persistent journal (every boot), read from its layer: works after a kill too."""
        journal_dir = self.directory / "upper/var/log/journal"
        listed = run("journalctl", "-D", str(journal_dir), "-o", "json", "--no-pager", check=False, timeout=60).stdout
        entries = []
        for line in listed.splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries

    def release(self, keep_journal: Path | None = None) -> None:
        """Unmounts the node's layer (after the container is gone) and removes it, keeping its journal in
        ``keep_journal`` (read it with ``journalctl -D``)."""
        self.kill()
        subprocess.run(["umount", "--lazy", str(self.merged)], capture_output=True)
        journal = self.directory / "upper/var/log/journal"
        if keep_journal is not None and journal.is_dir():
            shutil.copytree(journal, keep_journal / self.hostname / self.instance_id, dirs_exist_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)
