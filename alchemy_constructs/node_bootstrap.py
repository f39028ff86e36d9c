"""Everything a node's cloud-config holds, assembled from data and from real files.

A node booted from this document runs the whole platform with no manual step: docker,
an etcd v3 member that finds its cluster through the Auto Scaling group, the secrets
from Secrets Manager, and every unit in ``services/`` placed by its ``[X-Fleet]`` section.
The node scripts (``node_scripts/``) and system units (``node_units/``) beside this module
are the construct's own files; the platform's services come from the directory the stack
passes in.

A node's files come from three places, so that the user data stays a small stub whatever the
number of services (EC2 caps it at 16 KB):

* the user data: the few values a node needs before anything else (region, cluster, stack, where
  the bundle and the deploy values are), the first unit and the script that fetches the rest;
* the node bundle (an S3 asset, built at synth): scripts, units and every value known at synth;
* the deploy values (one SSM parameter, :class:`alchemy_constructs.deploy_values.DeployValues`):
  the values CloudFormation knows only at deploy time, such as secret ARNs, the snapshot bucket's
  name and the repository of the images built from the project.

At boot the first unit fetches the bundle and the deploy values, then ``alchemy-deploy-values``
writes ``/etc/environment`` from all three and fills the ``@@NAME@@`` markers that the bundle's
files hold where a deploy-time value belongs (an image's repository).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Stack, Token
from aws_cdk import aws_ecr_assets as ecr_assets

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
NODE_ENVIRONMENT = "/etc/alchemy/node.env"
"""The user data's own variables; ``alchemy-deploy-values`` puts them first in ``/etc/environment``."""
BUNDLE_ENVIRONMENT = "/etc/alchemy/bundle.env"
"""The variables known at synth, in the bundle."""
DEPLOY_VALUES_FILE = "/etc/alchemy/deploy-values.env"
"""Where the fetch script writes the deploy values parameter's text."""
DEPLOY_VALUE_FILES_MANIFEST = "/opt/alchemy/deploy-value-files"
"""The bundle's files that hold ``@@NAME@@`` markers, one path a line, for ``alchemy-deploy-values``."""
IMAGE_REPOSITORY = "IMAGE_REPOSITORY"
"""Deploy value of the (first) repository of the images built from the project; more are numbered."""

DEFAULT_ROUTER_PORT = 8080
DEFAULT_ROUTER_TIMEOUT_SECONDS = 30
DEFAULT_READY_TIMEOUT_SECONDS = 900

MASKED_UNITS = ("update-engine.service", "locksmithd.service", "etcd-member.service")
"""Flatcar's self-update (new images roll out through `cdk deploy` instead) and its own etcd unit."""

_DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def deploy_value_marker(name: str) -> str:
    """How a bundle file holds a deploy value that ``alchemy-deploy-values`` fills in at boot."""
    return f"@@{name}@@"


@dataclass(frozen=True, kw_only=True)
class NodeSecrets:
    """Secrets Manager ARNs the node reads at boot (ARNs only: no secret value)."""

    rabbitmq_cookie_arn: str
    rabbitmq_admin_password_arn: str
    rabbitmq_service_password_arns: Mapping[str, str] = field(default_factory=dict)
    """Each service's own broker password, by service name (the user is named after the service)."""
    etcd_root_password_arn: str | None = None
    """Password of etcd's ``root`` user."""


@dataclass(frozen=True, kw_only=True)
class BundleLocation:
    """Where a node finds its bundle, and the SHA-256 it must have (CDK tokens are fine)."""

    url: str
    """``s3://bucket/key`` of the gzipped tar."""
    sha256: str


@dataclass(frozen=True, kw_only=True)
class DeployValuesLocation:
    """The SSM parameter that holds the deploy values, and a digest of its unresolved value: the digest is
    in the user data so that a change of the deploy values changes the launch template, and the nodes roll."""

    parameter_name: str
    digest: str


@dataclass(frozen=True, kw_only=True)
class RepositoryImage:
    """An image whose repository is known only at deploy time (an image asset's: its URI names the account
    and region) under a tag known at synth (the asset's hash). Only the repository travels in the deploy
    values, once for every image in it; the tag stays in the unit in the bundle."""

    repository_uri: str
    tag: str

    def __post_init__(self) -> None:
        if Token.is_unresolved(self.tag) or not _DOCKER_TAG.match(self.tag):
            raise ValueError(
                f"RepositoryImage tag {self.tag!r} must be a docker tag known at synth "
                "(letters, digits, _ . -; up to 128)"
            )


def repository_images(assets: Mapping[str, ecr_assets.DockerImageAsset]) -> dict[str, RepositoryImage]:
    """Image assets by placeholder as :class:`RepositoryImage` values; assets that share a repository (they
    all use the CDK bootstrap's one) share one repository URI string, so it is one deploy value."""
    uris: dict[str, str] = {}
    images = {}
    for name, asset in assets.items():
        uri = asset.repository.repository_uri
        key = json.dumps(Stack.of(asset).resolve(uri), sort_keys=True)
        images[name] = RepositoryImage(repository_uri=uris.setdefault(key, uri), tag=asset.image_tag)
    return images


@dataclass(frozen=True, kw_only=True)
class NodeBootstrap:
    """The inputs of a node's cloud-config and bundle; CDK tokens are fine wherever a deploy value goes."""

    region: str
    cluster_name: str
    services_directory: Path
    """Where the platform's unit files are (the repository's ``services/``)."""
    secrets: NodeSecrets | None = None
    etcd_snapshot_bucket: str = ""
    etcd_snapshot_prefix: str = "alchemy/etcd/"
    """The key prefix of the snapshots (the ``EtcdSnapshots`` construct's, whose bucket policy guards it)."""
    etcd_discovery_url: str | None = None
    """Default: etcd members come from the Auto Scaling group; with a URL, etcd's discovery service."""
    cluster_size_hint: int = 3
    images: Mapping[str, str | RepositoryImage] = field(default_factory=dict)
    """Values for ``{{name}}`` markers of the service units, e.g. ``router_image``: an image reference
    known at synth, or a :class:`RepositoryImage`."""
    instances: Mapping[str, int] = field(default_factory=dict)
    """Instances per node of template services, e.g. ``{"hello_world": 2}``."""
    stack_name: str | None = None
    """The stack whose node group waits for this node's ready signal."""
    node_group_logical_id: str | None = None
    """The group's logical id in that stack (a literal once resolved: the signal names it)."""
    lifecycle_hook_name: str | None = None
    """The group's termination hook, which the node completes after leaving etcd and RabbitMQ."""
    router_port: int = DEFAULT_ROUTER_PORT
    router_timeout_seconds: int = DEFAULT_ROUTER_TIMEOUT_SECONDS
    ready_timeout_seconds: int = DEFAULT_READY_TIMEOUT_SECONDS
    """How long the node's readiness check waits before it signals FAILURE."""

    def __post_init__(self) -> None:
        for name, image in self.images.items():
            if isinstance(image, str) and Token.is_unresolved(image):
                raise ValueError(
                    f"images[{name!r}] is known only at deploy time: give it as a RepositoryImage "
                    "(the repository URI may be a token, the tag must be known at synth)"
                )

    def node_environment(self, *, bundle: BundleLocation, deploy_values: DeployValuesLocation) -> dict[str, str]:
        """What the user data's environment holds: the original's four variables, then what a node needs
        before it has its bundle and deploy values."""
        variables = {
            "REGION_NAME": self.region,
            "CLUSTER_NAME": self.cluster_name,
            "PRIVATEIP": PRIVATE_IPV4,
            "PUBLICIP": PUBLIC_IPV4,
        }
        if self.stack_name is not None:
            variables["STACK_NAME"] = self.stack_name
        variables.update(
            {
                "DEPLOY_VALUES_PARAMETER": deploy_values.parameter_name,
                "DEPLOY_VALUES_DIGEST": deploy_values.digest,
                "NODE_BUNDLE_URL": bundle.url,
                "NODE_BUNDLE_SHA256": bundle.sha256,
            }
        )
        return variables

    def bundle_environment(self) -> dict[str, str]:
        """The variables known at synth, which travel in the bundle."""
        variables = {"RABBITMQ_ADMIN_USER": ADMIN_USER}
        if self.etcd_discovery_url is not None:
            variables["ETCD_DISCOVERY_URL"] = self.etcd_discovery_url
        if self.lifecycle_hook_name is not None:
            variables["LIFECYCLE_HOOK_NAME"] = self.lifecycle_hook_name
        variables["ETCD_SNAPSHOT_PREFIX"] = self.etcd_snapshot_prefix
        variables["ROUTER_PORT"] = str(self.router_port)
        variables["ROUTER_TIMEOUT_SECONDS"] = str(self.router_timeout_seconds)
        variables["READY_TIMEOUT"] = str(self.ready_timeout_seconds)
        return variables

    def deploy_values(self) -> dict[str, str]:
        """The variables CloudFormation fills in at deploy time (ARNs, names, image repositories): the
        text of the deploy values parameter, which the node reads at boot."""
        # The region again under the name the AWS CLI reads: one variable less in the user data.
        variables = {"AWS_REGION": self.region}
        if self.secrets is not None:
            variables["RABBITMQ_COOKIE_SECRET"] = self.secrets.rabbitmq_cookie_arn
            variables["RABBITMQ_ADMIN_SECRET"] = self.secrets.rabbitmq_admin_password_arn
            if self.secrets.rabbitmq_service_password_arns:
                variables["RABBITMQ_SERVICE_SECRETS"] = " ".join(
                    f"{service}={arn}" for service, arn in self.secrets.rabbitmq_service_password_arns.items()
                )
            if self.secrets.etcd_root_password_arn is not None:
                variables["ETCD_ROOT_SECRET"] = self.secrets.etcd_root_password_arn
        variables["ETCD_SNAPSHOT_BUCKET"] = self.etcd_snapshot_bucket
        if self.node_group_logical_id is not None:
            variables["NODE_GROUP_LOGICAL_ID"] = self.node_group_logical_id
        variables.update({name: uri for uri, name in self._repositories().items()})
        return variables

    def _repositories(self) -> dict[str, str]:
        """Repository URI -> its deploy value's name, in the order the images name them."""
        names: dict[str, str] = {}
        for image in self.images.values():
            if isinstance(image, RepositoryImage) and image.repository_uri not in names:
                number = len(names) + 1
                names[image.repository_uri] = IMAGE_REPOSITORY if number == 1 else f"{IMAGE_REPOSITORY}_{number}"
        return names

    def placeholder_values(self) -> dict[str, str]:
        repositories = self._repositories()
        images = {
            name: (
                f"{deploy_value_marker(repositories[image.repository_uri])}:{image.tag}"
                if isinstance(image, RepositoryImage)
                else image
            )
            for name, image in self.images.items()
        }
        return {
            "etcd_image": ETCD_IMAGE,
            "aws_cli_image": AWS_CLI_IMAGE,
            "rabbitmq_image": RABBITMQ_IMAGE,
            **images,
        }

    def node_files(self) -> dict[str, str]:
        """Scripts and broker configuration by absolute path."""
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
        """The platform's units as placed."""
        return place_all(read_unit_files(self.services_directory, self.placeholder_values()), self.instances)

    def placed_units(self) -> list[Unit]:
        """Every unit a node gets, with what it does at boot."""
        return [*self.system_units(), *self.service_units()]

    def bundle_files(self) -> dict[str, str]:
        """Everything in the node bundle by absolute path: scripts, configuration, unit files, the variables
        known at synth, the manifest of units to start and the list of files with deploy-value markers.

        The bundle is built at synth: a deploy-time value (a CDK token) in it is refused with the file's
        name; it belongs in :meth:`deploy_values`, marked with :func:`deploy_value_marker` where it is used.
        """
        units = self.placed_units()
        files = self.node_files()
        files.update({f"{SYSTEMD_DIRECTORY}/{unit.name}": unit.content for unit in units if unit.content})
        files[BUNDLE_ENVIRONMENT] = environment_file(self.bundle_environment())
        files[UNITS_MANIFEST] = "".join(f"{unit.name}\n" for unit in units if unit.command == "start")
        unresolved = sorted(path for path, text in files.items() if Token.is_unresolved(text))
        if unresolved:
            raise UnitFileError(
                f"{', '.join(unresolved)}: a deploy-time value cannot be in the node bundle, which is built at "
                "synth; it goes into the deploy values (an image: as a RepositoryImage)"
            )
        marked = sorted(path for path, text in files.items() if _MARKER.search(without_comments(text)))
        if marked:
            files[DEPLOY_VALUE_FILES_MANIFEST] = "".join(f"{path}\n" for path in marked)
        return files

    def bundle_archive(self) -> bytes:
        """The node files as one tar (deterministic: sorted, root-owned, time zero), uncompressed."""
        return deterministic_tar(self.bundle_files())

    def cloud_config(self, *, bundle: BundleLocation, deploy_values: DeployValuesLocation) -> CloudConfig:
        """The user data: the node's first variables, and the first unit that fetches ``bundle`` and the
        deploy values. Everything else reaches the node in the bundle or the deploy values, so the user data
        is the same size however many services there are."""
        values = self.placeholder_values()
        (first,) = read_unit_files(NODE_BOOT, values, FIRST_UNIT)
        fetch = NODE_BOOT / FETCH_SCRIPT
        environment = self.node_environment(bundle=bundle, deploy_values=deploy_values)
        return CloudConfig(
            units=(
                *(Unit(name=name, mask=True) for name in MASKED_UNITS),
                Unit(name="docker.service", enable=True, command="start"),
                Unit(name=FIRST_UNIT, content=without_comments(first.content), command="start"),
            ),
            write_files=(
                WriteFile(NODE_ENVIRONMENT, environment_file(environment)),
                WriteFile(
                    f"{BIN}/{FETCH_SCRIPT}",
                    without_comments(render_placeholders(FETCH_SCRIPT, fetch.read_text(), values)),
                    permissions="0755",
                ),
            ),
            reboot_strategy="off",
        )


_MARKER = re.compile(r"@@[A-Z][A-Z0-9_]*@@")


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
