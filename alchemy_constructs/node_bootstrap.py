"""Everything a node's cloud-config holds, assembled from data and from real files.

A node booted from this document runs the whole platform with no manual step: docker,
an etcd v3 member that finds its cluster through the Auto Scaling group, the secrets
from Secrets Manager, and every unit in ``services/`` placed by its ``[X-Fleet]`` section.
The node scripts (``node_scripts/``) and system units (``node_units/``) beside this module
are the construct's own files; the platform's services come from the directory the stack
passes in.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Token

from alchemy_constructs.cloud_config import PRIVATE_IPV4, PUBLIC_IPV4, CloudConfig, Unit, WriteFile, environment_file
from alchemy_constructs.rabbitmq_config import ADMIN_USER, RABBITMQ_IMAGE, RabbitMqConfig, enabled_plugins
from alchemy_constructs.unit_files import UnitFileError, place_all, read_unit_files, render_placeholders

HERE = Path(__file__).resolve().parent
NODE_SCRIPTS = HERE / "node_scripts"
NODE_UNITS = HERE / "node_units"
NODE_BOOT = HERE / "node_boot"
"""What the user data itself carries: the first unit and the script that fetches the bundle."""

ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"
"""Pinned etcd v3 image, for the server and for etcdctl."""
AWS_CLI_IMAGE = "amazon/aws-cli:2.22.0"
"""Pinned AWS CLI v2 image (Flatcar ships no AWS CLI, and no cfn-signal)."""
BIN = "/opt/bin"
"""Where node scripts go: on Flatcar, /usr is read-only and /opt/bin is on root's PATH."""
SYSTEMD_DIRECTORY = "/etc/systemd/system"
FIRST_UNIT = "alchemy-files.service"
"""The one unit in cloud-config itself: it fetches and unpacks the bundle and starts the rest."""
FETCH_SCRIPT = "alchemy-fetch-bundle"
UNITS_MANIFEST = "/opt/alchemy/units"

DEPLOY_VALUES_DROP_IN = "10-deploy-values.conf"
"""Drop-in that carries a unit's ``Environment=`` lines whose values are only known at deploy time
(an image asset's ECR URI): the bundle is compressed at synth and cannot hold them."""

DEFAULT_ROUTER_PORT = 8080
DEFAULT_ROUTER_TIMEOUT_SECONDS = 30
DEFAULT_READY_TIMEOUT_SECONDS = 900

MASKED_UNITS = ("update-engine.service", "locksmithd.service", "etcd-member.service")
"""Flatcar's self-update (new images roll out through `cdk deploy` instead) and its own etcd unit."""


@dataclass(frozen=True)
class NodeSecrets:
    """Secrets Manager ARNs the node reads at boot (ARNs only: no secret value)."""

    rabbitmq_cookie_arn: str
    rabbitmq_admin_password_arn: str
    rabbitmq_service_password_arns: Mapping[str, str] = field(default_factory=dict)
    """Each service's own broker password, by service name (the user is named after the service)."""
    etcd_root_password_arn: str | None = None
    """Password of etcd's ``root`` user."""


@dataclass(frozen=True)
class BundleLocation:
    """Where a node finds its bundle, and the SHA-256 it must have (CDK tokens are fine)."""

    url: str
    """``s3://bucket/key`` of the gzipped tar."""
    sha256: str


@dataclass(frozen=True)
class NodeBootstrap:
    """The inputs of a node's cloud-config; CDK tokens are fine in every string."""

    region: str
    cluster_name: str
    services_directory: Path
    """Where the platform's unit files are (the repository's ``services/``)."""
    secrets: NodeSecrets | None = None
    etcd_snapshot_bucket: str = ""
    etcd_discovery_url: str | None = None
    """Default: etcd members come from the Auto Scaling group; with a URL, etcd's discovery service."""
    cluster_size_hint: int = 3
    images: Mapping[str, str] = field(default_factory=dict)
    """Values for ``{{name}}`` markers of the service units, e.g. ``router_image``."""
    instances: Mapping[str, int] = field(default_factory=dict)
    """Instances per node of template services, e.g. ``{"hello_world": 2}``."""
    stack_name: str | None = None
    """The stack whose node group waits for this node's ready signal."""
    node_group_logical_id: str | None = None
    """The group's logical id in that stack (a literal: the signal names it)."""
    lifecycle_hook_name: str | None = None
    """The group's termination hook, which the node completes after leaving etcd and RabbitMQ."""
    router_port: int = DEFAULT_ROUTER_PORT
    router_timeout_seconds: int = DEFAULT_ROUTER_TIMEOUT_SECONDS
    ready_timeout_seconds: int = DEFAULT_READY_TIMEOUT_SECONDS
    """How long the node's readiness check waits before it signals FAILURE."""

    def environment(self) -> dict[str, str]:
        """``/etc/environment``: the original's four variables, then what the node scripts and units read."""
        variables = {
            "REGION_NAME": self.region,
            "CLUSTER_NAME": self.cluster_name,
            "PRIVATEIP": PRIVATE_IPV4,
            "PUBLICIP": PUBLIC_IPV4,
            "AWS_REGION": self.region,
            "ETCD_SNAPSHOT_BUCKET": self.etcd_snapshot_bucket,
            "RABBITMQ_ADMIN_USER": ADMIN_USER,
        }
        if self.secrets is not None:
            variables["RABBITMQ_COOKIE_SECRET"] = self.secrets.rabbitmq_cookie_arn
            variables["RABBITMQ_ADMIN_SECRET"] = self.secrets.rabbitmq_admin_password_arn
            if self.secrets.rabbitmq_service_password_arns:
                variables["RABBITMQ_SERVICE_SECRETS"] = " ".join(
                    f"{service}={arn}" for service, arn in self.secrets.rabbitmq_service_password_arns.items()
                )
            if self.secrets.etcd_root_password_arn is not None:
                variables["ETCD_ROOT_SECRET"] = self.secrets.etcd_root_password_arn
        if self.etcd_discovery_url is not None:
            variables["ETCD_DISCOVERY_URL"] = self.etcd_discovery_url
        for name, value in (
            ("STACK_NAME", self.stack_name),
            ("NODE_GROUP_LOGICAL_ID", self.node_group_logical_id),
            ("LIFECYCLE_HOOK_NAME", self.lifecycle_hook_name),
        ):
            if value is not None:
                variables[name] = value
        variables["ROUTER_PORT"] = str(self.router_port)
        variables["ROUTER_TIMEOUT_SECONDS"] = str(self.router_timeout_seconds)
        variables["READY_TIMEOUT"] = str(self.ready_timeout_seconds)
        return variables

    def placeholder_values(self) -> dict[str, str]:
        return {
            "etcd_image": ETCD_IMAGE,
            "aws_cli_image": AWS_CLI_IMAGE,
            "rabbitmq_image": RABBITMQ_IMAGE,
            **self.images,
        }

    def node_files(self) -> dict[str, str]:
        """Scripts and broker configuration by absolute path: the contents of the node bundle."""
        values = self.placeholder_values()
        config = RabbitMqConfig(cluster_size_hint=self.cluster_size_hint)
        files = {
            f"{BIN}/{path.name}": render_placeholders(path.name, path.read_text(), values)
            for path in sorted(NODE_SCRIPTS.iterdir())
            if path.is_file()
        }
        files["/etc/alchemy/rabbitmq/rabbitmq.conf"] = config.rabbitmq_conf()
        files["/etc/alchemy/rabbitmq/enabled_plugins"] = enabled_plugins()
        return files

    def system_units(self) -> list[Unit]:
        """The node's own units (etcd, secrets, readiness, snapshots); those with [Install] start at boot."""
        values = self.placeholder_values()
        units = []
        for unit in read_unit_files(NODE_UNITS, values, "*.service") + read_unit_files(NODE_UNITS, values, "*.timer"):
            # Units without [Install] run when another unit requires them (or a timer fires).
            starts = unit.name.endswith(".timer") or "[Install]" in unit.content
            units.append(
                Unit(name=unit.name, content=unit.content, enable=starts or None, command="start" if starts else None)
            )
        return units

    def service_units(self) -> list[Unit]:
        """The platform's units as placed, without the lines that hold deploy-time values (see
        :meth:`deploy_time_drop_ins`)."""
        return [without_deploy_time_lines(unit) for unit in self._rendered_service_units()]

    def deploy_time_drop_ins(self) -> list[WriteFile]:
        """Drop-ins with the ``Environment=`` lines of the service units that hold deploy-time values.

        An image built from the project is known at synth only as a CloudFormation expression (its
        ECR URI names the account and region); the compressed bundle cannot hold one, so those lines
        go into a small uncompressed drop-in beside the unit, which systemd reads with it.
        """
        return [
            WriteFile(f"{SYSTEMD_DIRECTORY}/{unit.name}.d/{DEPLOY_VALUES_DROP_IN}", "[Service]\n" + "".join(lines))
            for unit in self._rendered_service_units()
            if (lines := deploy_time_lines(unit))
        ]

    def _rendered_service_units(self) -> list[Unit]:
        return place_all(read_unit_files(self.services_directory, self.placeholder_values()), self.instances)

    def placed_units(self) -> list[Unit]:
        """Every unit a node gets, with what it does at boot."""
        return [*self.system_units(), *self.service_units()]

    def bundle_files(self) -> dict[str, str]:
        """Everything in the node bundle by absolute path: scripts, configuration, unit files and
        the manifest of units to start."""
        units = self.placed_units()
        files = self.node_files()
        files.update({f"{SYSTEMD_DIRECTORY}/{unit.name}": unit.content for unit in units if unit.content})
        files[UNITS_MANIFEST] = "".join(f"{unit.name}\n" for unit in units if unit.command == "start")
        return files

    def bundle_archive(self) -> bytes:
        """The node files as one tar (deterministic: sorted, root-owned, time zero), uncompressed."""
        return deterministic_tar(self.bundle_files())

    def cloud_config(self, bundle: BundleLocation) -> CloudConfig:
        """The user data: environment, deploy-time drop-ins, and the first unit that fetches ``bundle``.

        Everything else reaches the node inside the bundle, so the user data stays a small stub
        however many services there are.
        """
        values = self.placeholder_values()
        (first,) = read_unit_files(NODE_BOOT, values, FIRST_UNIT)
        fetch = NODE_BOOT / FETCH_SCRIPT
        environment = {**self.environment(), "NODE_BUNDLE_URL": bundle.url, "NODE_BUNDLE_SHA256": bundle.sha256}
        return CloudConfig(
            units=(
                *(Unit(name=name, mask=True) for name in MASKED_UNITS),
                Unit(name="docker.service", enable=True, command="start"),
                Unit(name=FIRST_UNIT, content=without_comments(first.content), command="start"),
            ),
            write_files=(
                WriteFile("/etc/environment", environment_file(environment)),
                WriteFile(
                    f"{BIN}/{FETCH_SCRIPT}",
                    without_comments(render_placeholders(FETCH_SCRIPT, fetch.read_text(), values)),
                    permissions="0755",
                ),
                *self.deploy_time_drop_ins(),
            ),
            reboot_strategy="off",
        )


_SECTION_HEADER = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")


def deploy_time_lines(unit: Unit) -> list[str]:
    """The lines of ``unit`` that hold a deploy-time value; only ``Environment=`` lines of
    ``[Service]`` may (a drop-in adds them back without changing the unit's meaning)."""
    if unit.content is None or not Token.is_unresolved(unit.content):
        return []
    lines = []
    section = None
    for line in unit.content.splitlines():
        header = _SECTION_HEADER.match(line.strip())
        if header:
            section = header["name"]
        elif Token.is_unresolved(line):
            if section != "Service" or not line.startswith("Environment="):
                raise UnitFileError(
                    f"{unit.name}: a deploy-time value (an image built from the project) may only fill an "
                    f"Environment= line of [Service]; found in: {line}"
                )
            lines.append(f"{line}\n")
    return lines


def without_deploy_time_lines(unit: Unit) -> Unit:
    moved = {line.rstrip("\n") for line in deploy_time_lines(unit)}
    if not moved or unit.content is None:
        return unit
    kept = "".join(line for line in unit.content.splitlines(keepends=True) if line.rstrip("\n") not in moved)
    return dataclasses.replace(unit, content=kept)


def without_comments(text: str) -> str:
    """A unit or script without comment lines and blank lines (a script keeps its shebang)."""
    lines = text.splitlines()
    kept = [
        line
        for number, line in enumerate(lines)
        if line.strip() and not (line.lstrip().startswith(("#", ";")) and not (number == 0 and line.startswith("#!")))
    ]
    return "\n".join(kept) + "\n"


def deterministic_tar(files: Mapping[str, str]) -> bytes:
    """An uncompressed tar of ``files``: root-owned, time zero, sorted, executable under bin/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for path, text in sorted(files.items()):
            data = without_comments(text).encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o755 if path.startswith(BIN) else 0o644
            info.mtime = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
