"""Typed, validated settings of the Alchemy platform, read from CDK context.

Every knob a user can turn lives here, once: its default, the values it allows and the
message a bad value gets. Defaults are repeated in ``cdk.json`` so users can see them;
a test keeps the two in step. A bad value raises :class:`SettingsError` with one line that
names the key, the value and what is allowed, before any construct exists.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

NODE_COUNT_LIMIT = 50
"""Largest node group this project plans for (etcd and RabbitMQ clusters beyond it need another design)."""

MAX_AZ_COUNT = 6
"""The most availability zones any AWS region has; a region-bound synth checks the real number."""

SUBNET_PREFIX = 24
"""Every subnet is a /24, as in the original design: 251 usable addresses per subnet."""

SUBNETS_PER_AZ = 2
"""One public and one private subnet in each availability zone."""

NODE_IMAGE_CHANNELS = ("stable", "beta", "alpha", "lts")
PROFILES = ("default", "production")
PRODUCTION_MINIMUM = 3
"""AZs and nodes a production cluster needs at least: etcd and the brokers keep a majority
when one node (or one AZ) is lost."""

_CLUSTER_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d$")
_AMI_ID = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_KEY_PAIR_NAME = re.compile(r"^[\x20-\x7e]{1,255}$")
_CERTIFICATE_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov)?:(?:"
    r"acm:[a-z]{2}(?:-gov)?-[a-z]+-\d:\d{12}:certificate/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|iam::\d{12}:server-certificate/[\w+=,.@/-]{1,128})$"
)
_IMAGE = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$"
)
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(?::\d+)?(?:/[\w./%-]*)?$")
_SETTING_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
"""Context keys of this shape belong to the project; CDK's own keys hold '@', ':' or '-'."""


class SettingsError(ValueError):
    """A setting has a value the platform cannot be built with."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid setting {key}={value!r}: {allowed}")


class UnknownSettingError(SettingsError):
    """A context key looks like a setting but is not one (usually a typo)."""

    def __init__(self, key: str, value: object, suggestion: str | None) -> None:
        hint = f"did you mean {suggestion!r}?" if suggestion else "see the settings table in README.md"
        super().__init__(key, value, f"unknown setting; {hint}")
        self.args = (f"unknown setting {key}={value!r}: {hint}",)


@dataclass(frozen=True)
class Settings:
    """Everything the stack is built from; construct with :meth:`from_context` to validate."""

    profile: str = "default"
    """``default``: cheap to try out. ``production``: the hardened set (see :meth:`_apply_profile`)."""
    cluster_name: str = "alchemy"
    """Stack name and the prefix of every Name tag."""
    account: str | None = None
    """Target AWS account; with ``region`` it binds the synth to one environment (AMI and AZ lookups)."""
    region: str | None = None
    """Target AWS region."""
    az_count: int = 2
    """Availability zones the VPC, the ELB and the node group span."""
    vpc_cidr: str = "10.0.0.0/16"
    """IPv4 range of the VPC; it is cut into one public and one private /24 per AZ."""
    nat_instance_type: str = "t3.micro"
    """Instance type of the NAT instance(s)."""
    nat_per_az: bool = False
    """One NAT instance per AZ (survives an AZ outage) instead of one for the whole VPC."""
    node_count: int = 3
    """Desired size of the node group."""
    node_min_count: int | None = None
    """Smallest size of the node group; defaults to ``node_count``."""
    node_max_count: int | None = None
    """Largest size of the node group; defaults to ``node_count``."""
    node_instance_type: str = "t3.medium"
    """Instance type of the nodes."""
    node_volume_gb: int = 50
    """Size of each node's encrypted gp3 root volume."""
    node_image_channel: str = "stable"
    """Flatcar release channel the node image is looked up from."""
    node_image_id: str | None = None
    """Explicit node AMI id; overrides the lookup."""
    key_pair_name: str | None = None
    """EC2 key pair for emergency SSH; Session Manager needs none."""
    certificate_arn: str | None = None
    """ACM (or IAM) certificate; when set, the ELB also listens with HTTPS on 443."""
    ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    """IPv4 ranges allowed to reach the ELB listeners."""
    router_image: str | None = None
    """Container image of the Alchemy router (one per node); default: built from ``alchemy_services/``."""
    hello_world_image: str | None = None
    """Container image of the hello_world example service; default: built from ``alchemy_services/``."""
    router_timeout_seconds: int = 30
    """How long the router waits for a service's answer before it replies 408."""
    hello_world_instances: int = 2
    """hello_world instances on every node."""
    etcd_discovery_url: str | None = None
    """etcd discovery URL (the original's discovery.etcd.io token); default: members from the node group."""

    @property
    def desired_nodes(self) -> int:
        return self.node_count

    @property
    def min_nodes(self) -> int:
        return self.node_count if self.node_min_count is None else self.node_min_count

    @property
    def max_nodes(self) -> int:
        return self.node_count if self.node_max_count is None else self.node_max_count

    @property
    def is_production(self) -> bool:
        return self.profile == "production"

    @property
    def plain_http(self) -> bool:
        """Whether the ELB also listens on plain HTTP (never in production)."""
        return not self.is_production

    @property
    def log_retention_days(self) -> int:
        """How long flow logs, ELB access logs and etcd snapshots are kept."""
        return 400 if self.is_production else 30

    @property
    def is_environment_bound(self) -> bool:
        """Whether the synth targets one account and region (and so may look things up)."""
        return self.account is not None and self.region is not None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Settings:
        """Read and validate settings from a CDK context mapping.

        Keys that are not settings are ignored when they look like CDK's own keys
        (``@aws-cdk/...``, ``aws:cdk:...``, ``cli-telemetry``); a snake_case key that is not a
        setting is a typo and is refused with the closest known key.
        """
        known = {field.name: field for field in dataclasses.fields(cls)}
        for key, value in context.items():
            if _SETTING_KEY.match(key) and key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                raise UnknownSettingError(key, value, close[0] if close else None)
        values = {
            name: _PARSERS[name](name, context[name])
            for name in known
            if name in context and not _is_unset(context[name])
        }
        settings = cls(**values)
        settings._check_combinations()
        return settings._apply_profile()

    def _apply_profile(self) -> Settings:
        """Production: 3+ AZs and nodes, HTTPS only, a NAT instance per AZ (set here)."""
        if not self.is_production:
            return self
        for key, value in (
            ("az_count", self.az_count),
            ("node_count", self.node_count),
            ("node_min_count", self.min_nodes),
        ):
            if value < PRODUCTION_MINIMUM:
                raise SettingsError(
                    key, value, f"the production profile needs at least {PRODUCTION_MINIMUM} (set -c {key}=3)"
                )
        if self.certificate_arn is None:
            raise SettingsError(
                "certificate_arn", None, "the production profile serves HTTPS only: give an ACM certificate ARN"
            )
        return dataclasses.replace(self, nat_per_az=True)

    def _check_combinations(self) -> None:
        """Checks that involve more than one setting."""
        if self.min_nodes > self.node_count:
            raise SettingsError(
                "node_min_count",
                self.min_nodes,
                f"must not be above node_count ({self.node_count})",
            )
        if self.max_nodes < self.node_count:
            raise SettingsError(
                "node_max_count",
                self.max_nodes,
                f"must not be below node_count ({self.node_count})",
            )
        if (self.account is None) != (self.region is None):
            missing = "region" if self.region is None else "account"
            given = "account" if self.region is None else "region"
            raise SettingsError(
                missing,
                None,
                f"must be set together with {given} (or leave both unset for an environment-agnostic synth)",
            )
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        subnets = self.az_count * SUBNETS_PER_AZ
        longest_prefix = SUBNET_PREFIX - math.ceil(math.log2(subnets))
        if vpc.prefixlen > longest_prefix:
            raise SettingsError(
                "vpc_cidr",
                self.vpc_cidr,
                f"too small for {subnets} /{SUBNET_PREFIX} subnets ({self.az_count} AZs x {SUBNETS_PER_AZ}); "
                f"use a prefix from /16 to /{longest_prefix}",
            )


def _is_unset(value: object) -> bool:
    """``-c key=`` and JSON ``null`` both mean "use the default"."""
    return value is None or value == ""


def _whole_number(low: int, high: int) -> Callable[[str, object], int]:
    def parse(key: str, value: object) -> int:
        allowed = f"must be a whole number from {low} to {high}"
        if isinstance(value, bool):
            raise SettingsError(key, value, allowed)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            number = int(value)
        else:
            raise SettingsError(key, value, allowed)
        if not low <= number <= high:
            raise SettingsError(key, value, allowed)
        return number

    return parse


def _matching(pattern: re.Pattern[str], allowed: str) -> Callable[[str, object], str]:
    def parse(key: str, value: object) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise SettingsError(key, value, allowed)
        return value

    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def parse(key: str, value: object) -> str:
        if value not in choices:
            raise SettingsError(key, value, f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


def _boolean(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SettingsError(key, value, "must be true or false")


def _ipv4_network(key: str, text: object, allowed: str) -> ipaddress.IPv4Network:
    if not isinstance(text, str) or "/" not in text:
        raise SettingsError(key, text, allowed)
    try:
        return ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError:
        raise SettingsError(key, text, allowed) from None


def _vpc_cidr(key: str, value: object) -> str:
    allowed = "must be an IPv4 CIDR block with no host bits set and a prefix from /16 to /28, e.g. 10.0.0.0/16"
    network = _ipv4_network(key, value, allowed)
    if not 16 <= network.prefixlen <= 28:
        raise SettingsError(key, value, allowed)
    return str(network)


def _ingress_cidrs(key: str, value: object) -> tuple[str, ...]:
    allowed = "must be a list (or comma-separated string) of IPv4 CIDR blocks, e.g. 203.0.113.0/24"
    items: list[object]
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise SettingsError(key, value, allowed)
    if not items:
        raise SettingsError(key, value, allowed)
    return tuple(str(_ipv4_network(key, item, allowed)) for item in items)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "profile": _one_of(PROFILES),
    "cluster_name": _matching(
        _CLUSTER_NAME,
        "must be 1 to 32 letters, digits or hyphens, start with a letter and not end with a hyphen",
    ),
    "account": _matching(_ACCOUNT, "must be a 12-digit AWS account id"),
    "region": _matching(_REGION, "must be an AWS region name such as eu-west-1"),
    "az_count": _whole_number(2, MAX_AZ_COUNT),
    "vpc_cidr": _vpc_cidr,
    "nat_instance_type": _matching(
        _INSTANCE_TYPE,
        "must be an EC2 instance type of the form family.size, e.g. t3.micro",
    ),
    "nat_per_az": _boolean,
    "node_count": _whole_number(1, NODE_COUNT_LIMIT),
    "node_min_count": _whole_number(1, NODE_COUNT_LIMIT),
    "node_max_count": _whole_number(1, NODE_COUNT_LIMIT),
    "node_instance_type": _matching(
        _INSTANCE_TYPE,
        "must be an EC2 instance type of the form family.size, e.g. t3.medium",
    ),
    "node_volume_gb": _whole_number(8, 16384),
    "node_image_channel": _one_of(NODE_IMAGE_CHANNELS),
    "node_image_id": _matching(_AMI_ID, "must be an AMI id such as ami-0123456789abcdef0"),
    "key_pair_name": _matching(_KEY_PAIR_NAME, "must be 1 to 255 printable ASCII characters"),
    "certificate_arn": _matching(
        _CERTIFICATE_ARN,
        "must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/UUID) or an IAM server certificate ARN",
    ),
    "ingress_cidrs": _ingress_cidrs,
    "router_image": _matching(
        _IMAGE, "must be a container image with a pinned tag or digest, e.g. quay.io/loyalty_nz/alchemy-router:v1.0.1"
    ),
    "hello_world_image": _matching(
        _IMAGE,
        "must be a container image with a pinned tag or digest, e.g. quay.io/loyalty_nz/alchemy-hello-world:v1.0.1",
    ),
    "hello_world_instances": _whole_number(1, 20),
    "router_timeout_seconds": _whole_number(1, 300),
    "etcd_discovery_url": _matching(_HTTPS_URL, "must be an https:// URL, e.g. https://discovery.etcd.io/TOKEN"),
}
