"""Typed, validated settings of the Alchemy platform, read from CDK context.

Every knob a user can turn lives here, once: its default, the values it allows and the
message a bad value gets. Defaults are repeated in ``cdk.json`` so users can see them;
a test keeps the two in step. A bad value raises :class:`SettingsError` with one line that
names the key, the value and what is allowed, before any construct exists.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aws_cdk.region_info import FactName, RegionInfo

from alchemy_constructs import node_image
from alchemy_constructs.router_load_balancer import DEFAULT_TLS_POLICY, TLS_1_2_POLICIES

NODE_COUNT_LIMIT = 50
"""Largest node group this project plans for (etcd and RabbitMQ clusters beyond it need another design)."""

MAX_AZ_COUNT = 6
"""The most availability zones any AWS region has; a region-bound synth checks the real number."""

SUBNET_PREFIX = 24
"""Every subnet is a /24, as in the original design: 251 usable addresses per subnet."""

SUBNETS_PER_AZ = 2
"""One public and one private subnet in each availability zone."""

NODE_IMAGE_CHANNELS = node_image.CHANNELS
PROFILES = ("default", "production")
PRODUCTION_MINIMUM = 3
"""AZs and nodes a production cluster needs at least: etcd and the brokers keep a majority
when one node (or one AZ) is lost."""

SECURITY_GROUP_RULES_LIMIT = 60
"""Inbound rules per security group (VPC quota "Inbound or outbound rules per security group",
default 60): the ELB's group holds one rule per ingress CIDR and listener port."""
ROUTER_TIMEOUT_LIMIT_SECONDS = 300
"""The longest request timeout the router may be given (a stopping router waits this long for its requests)."""

IMAGE_NAME_LIMIT = 255
"""Docker refuses a repository name (registry and path) over 255 characters."""

CDK_CONTEXT_KEYS = frozenset({"acknowledged-issue-numbers", "cli-telemetry"})
"""Keys the CDK CLI itself writes into the context that have neither ':' nor a leading '@'
(``cdk acknowledge`` and ``cdk cli-telemetry``). Every other key of CDK's (feature flags
``@aws-cdk/...``, ``aws:cdk:...`` from the CLI, cached lookups ``ami:account=...``) holds one."""

GRAVITON_FAMILY = re.compile(r"a1|[a-z]+[0-9]+[a-z]*g[a-z]*|mac.*", re.ASCII)
"""Instance families with Arm (Graviton, Apple) processors: ``a1``, and a ``g`` among the
attributes after the generation number (``t4g``, ``m7gd``, ``c6gn``, ``im4gn``). The NAT and
node images are x86_64 only (and mac instances need dedicated hosts)."""

_CLUSTER_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?", re.ASCII)
_INSTANCE_TYPE = re.compile(r"([a-z][a-z0-9-]*)\.[a-z0-9]+", re.ASCII)
_ACCOUNT = re.compile(r"[0-9]{12}", re.ASCII)
_AMI_ID = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})", re.ASCII)
_KEY_PAIR_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?", re.ASCII)
_ACM_ARN = re.compile(
    r"arn:(aws(?:-[a-z]+)*):acm:([a-z0-9-]+):([0-9]{12}):certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.ASCII,
)
_IAM_CERTIFICATE_ARN = re.compile(
    r"arn:(aws(?:-[a-z]+)*):iam::([0-9]{12}):server-certificate/[\w+=,.@/-]{1,128}", re.ASCII
)
_IMAGE = re.compile(
    r"(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:[0-9a-f]{64})",
    re.ASCII,
)
_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9_./%-]*)?", re.ASCII)
_CIDR = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}", re.ASCII)
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+", re.ASCII)


@functools.cache
def known_regions() -> Mapping[str, str]:
    """Region name -> partition of every region this CDK version knows (read once, in one jsii call)."""
    return MappingProxyType(dict(RegionInfo.region_map(FactName.PARTITION)))


def normalized(key: str) -> str:
    """A key without case, hyphens and underscores: ``ingress_cidrs``, ``ingressCidrs`` and
    ``Ingress-CIDRs`` are one key to a reader, so they are one here too."""
    return re.sub(r"[-_]", "", key).lower()


def is_cdk_key(key: str) -> bool:
    """Whether a context key belongs to the CDK (its feature flags, CLI state, cached lookups)."""
    return key in CDK_CONTEXT_KEYS or ":" in key or key.startswith("@")


EMPTY_IS_REFUSED = frozenset(
    {
        "profile",
        "cluster_name",
        "account",
        "region",
        "vpc_cidr",
        "ingress_cidrs",
        "certificate_arn",
        "tls_policy",
        "node_image_id",
        "router_image",
        "hello_world_image",
    }
)
"""Settings where an empty value falling back to the default would widen access (ingress from
anywhere, plain HTTP only, the weaker profile) or change what is deployed where (another stack
name, account, region, network or image): an empty value there is a mistake, not a choice."""


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
    """Availability zones the VPC, the ELB and the node group span (production: 3)."""
    vpc_cidr: str = "10.0.0.0/16"
    """IPv4 range of the VPC; it is cut into one public and one private /24 per AZ."""
    nat_instance_type: str = "t3.micro"
    """Instance type of the NAT instance(s)."""
    nat_per_az: bool = False
    """One NAT instance per AZ (survives an AZ outage) instead of one for the whole VPC (production: true)."""
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
    tls_policy: str = DEFAULT_TLS_POLICY
    """Predefined classic-ELB security policy of the HTTPS listener: TLS 1.2 only."""
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

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Settings:
        """Read and validate settings from a CDK context mapping.

        Every key is either CDK's own (see :func:`is_cdk_key`) or exactly a setting's name: any
        other spelling is refused, naming the setting it was probably meant for, so that a
        mistyped ``ingress_cidrs`` cannot leave the ELB open to the world unnoticed.
        """
        known = {field.name: field for field in dataclasses.fields(cls)}
        for key, value in context.items():
            if key not in known and not is_cdk_key(key):
                raise UnknownSettingError(key, value, _meant(key, known))
        given = {name for name in known if name in context and not _is_unset(name, context[name])}
        values = {name: _PARSERS[name](name, context[name]) for name in sorted(given)}
        settings = cls(**values)
        if settings.is_production:
            settings = settings._raised_for_production(given)
        settings._check_combinations()
        return settings

    def _raised_for_production(self, given: set[str]) -> Settings:
        """Production: at least 3 AZs and nodes, a NAT instance per AZ, HTTPS only.

        The defaults are raised here; only a value given explicitly and weaker than that is
        refused, naming it, so ``-c profile=production -c certificate_arn=...`` is enough.
        """
        for key, value in (("az_count", self.az_count), ("node_count", self.node_count)):
            if key in given and value < PRODUCTION_MINIMUM:
                raise SettingsError(
                    key, value, f"the production profile needs at least {PRODUCTION_MINIMUM} (leave it unset for 3)"
                )
        if "node_min_count" in given and self.min_nodes < PRODUCTION_MINIMUM:
            raise SettingsError(
                "node_min_count",
                self.min_nodes,
                f"the production profile needs at least {PRODUCTION_MINIMUM} (leave it unset for node_count)",
            )
        if "nat_per_az" in given and not self.nat_per_az:
            raise SettingsError(
                "nat_per_az",
                self.nat_per_az,
                "the production profile runs a NAT instance per AZ (an AZ outage must not cut the others off)",
            )
        if self.certificate_arn is None:
            raise SettingsError(
                "certificate_arn", None, "the production profile serves HTTPS only: give an ACM certificate ARN"
            )
        return dataclasses.replace(
            self,
            az_count=max(self.az_count, PRODUCTION_MINIMUM),
            node_count=max(self.node_count, PRODUCTION_MINIMUM),
            nat_per_az=True,
        )

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
        listener_ports = (0 if self.is_production else 1) + (0 if self.certificate_arn is None else 1)
        if len(self.ingress_cidrs) * listener_ports > SECURITY_GROUP_RULES_LIMIT:
            raise SettingsError(
                "ingress_cidrs",
                f"{len(self.ingress_cidrs)} CIDR blocks",
                f"one rule per CIDR block and listener port ({listener_ports}) must stay within a security "
                f"group's {SECURITY_GROUP_RULES_LIMIT} inbound rules: at most "
                f"{SECURITY_GROUP_RULES_LIMIT // listener_ports} blocks",
            )
        if self.certificate_arn is not None:
            self._check_certificate_target(self.certificate_arn)

    def _check_certificate_target(self, arn: str) -> None:
        """The ELB can use only a certificate of its own partition, account and (ACM) region."""
        partition, region, account = _certificate_parts(arn)
        target_partition = known_regions()[self.region] if self.region is not None else None
        for name, have, want in (
            ("partition", partition, target_partition),
            ("region", region, self.region),
            ("account", account, self.account),
        ):
            if have is not None and want is not None and have != want:
                raise SettingsError(
                    "certificate_arn",
                    arn,
                    f"its {name} {have} is not the target's {name} {want}: the ELB can only use a certificate "
                    "in its own partition, account and region",
                )


def _meant(key: str, known: Mapping[str, object]) -> str | None:
    """The setting a stray key was most likely meant to be, if any is close."""
    by_form = {normalized(name): name for name in known}
    if normalized(key) in by_form:
        return by_form[normalized(key)]
    close = difflib.get_close_matches(normalized(key), list(by_form), n=1, cutoff=0.6)
    return by_form[close[0]] if close else None


def _is_unset(key: str, value: object) -> bool:
    """JSON ``null`` means "use the default"; so does ``-c key=`` (or blanks), except where
    :data:`EMPTY_IS_REFUSED` says a fall-back would widen access or change identity."""
    if value is None:
        return True
    if isinstance(value, str) and value.strip(" \t\r\n") == "":
        if key in EMPTY_IS_REFUSED:
            raise SettingsError(
                key, value, "must not be empty (leave the key out, or null in cdk.json, for the default)"
            )
        return True
    return False


def _certificate_parts(arn: str) -> tuple[str, str | None, str]:
    """(partition, region or None for an IAM certificate, account) of a checked certificate ARN."""
    acm = _ACM_ARN.fullmatch(arn)
    if acm is not None:
        return acm.group(1), acm.group(2), acm.group(3)
    iam = _IAM_CERTIFICATE_ARN.fullmatch(arn)
    assert iam is not None
    return iam.group(1), None, iam.group(2)


def _whole_number(low: int, high: int, why: str = "") -> Callable[[str, object], int]:
    allowed = f"must be a whole number from {low} to {high}{why}"

    def parse(key: str, value: object) -> int:
        if isinstance(value, bool):
            raise SettingsError(key, value, allowed)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value):
            number = int(value)
        else:
            raise SettingsError(key, value, allowed)
        if not low <= number <= high:
            raise SettingsError(key, value, allowed)
        return number

    return parse


def _matching(pattern: re.Pattern[str], allowed: str) -> Callable[[str, object], str]:
    """The whole value, in ASCII only, must match: no trailing newline, no other script's digits."""

    def parse(key: str, value: object) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
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
    if not isinstance(text, str) or not _CIDR.fullmatch(text):
        raise SettingsError(key, text, allowed)
    try:
        return ipaddress.IPv4Network(text, strict=True)
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
        # Spaces after the commas are for readability; any other blank is a mistake.
        items = [item.strip(" ") for item in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise SettingsError(key, value, allowed)
    if not items:
        raise SettingsError(key, value, allowed)
    networks = [str(_ipv4_network(key, item, allowed)) for item in items]
    for network in networks:
        if networks.count(network) > 1:
            raise SettingsError(key, network, "lists this CIDR block twice (a security group refuses duplicate rules)")
    return tuple(networks)


def _region(key: str, value: object) -> str:
    regions = known_regions()
    if not isinstance(value, str) or value not in regions:
        raise SettingsError(key, value, "must be an AWS region this CDK version knows, e.g. eu-west-1")
    return value


def _x86_instance_type(image: str) -> Callable[[str, object], str]:
    def parse(key: str, value: object) -> str:
        match = _INSTANCE_TYPE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise SettingsError(key, value, "must be an EC2 instance type of the form family.size, e.g. t3.medium")
        if GRAVITON_FAMILY.fullmatch(match.group(1)):
            raise SettingsError(
                key, value, f"must be an x86_64 instance type: the {image} image is x86_64 and {value} is Arm"
            )
        return match.group(0)

    return parse


def _certificate_arn(key: str, value: object) -> str:
    allowed = (
        "must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/UUID) or an IAM server "
        "certificate ARN (arn:aws:iam::ACCOUNT:server-certificate/NAME)"
    )
    if not isinstance(value, str):
        raise SettingsError(key, value, allowed)
    acm = _ACM_ARN.fullmatch(value)
    if acm is None and not _IAM_CERTIFICATE_ARN.fullmatch(value):
        raise SettingsError(key, value, allowed)
    partition = acm.group(1) if acm else value.split(":")[1]
    if partition not in set(known_regions().values()):
        raise SettingsError(
            key, value, f"names partition {partition}, which no AWS region this CDK version knows is in"
        )
    if acm is not None:
        region = acm.group(2)
        if known_regions().get(region) != partition:
            raise SettingsError(key, value, f"names region {region}, which is not a region of partition {partition}")
    return value


def _image(example: str) -> Callable[[str, object], str]:
    allowed = f"must be a container image with a pinned tag (not latest) or @sha256: digest, e.g. {example}"

    def parse(key: str, value: object) -> str:
        match = _IMAGE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise SettingsError(key, value, allowed)
        if (match.group("tag") or "").lower() == "latest":
            raise SettingsError(key, value, f"{allowed}: latest moves, so nodes would run different code")
        if len(match.group("name")) > IMAGE_NAME_LIMIT:
            raise SettingsError(key, value, f"the image name must be at most {IMAGE_NAME_LIMIT} characters (Docker)")
        return str(value)

    return parse


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "profile": _one_of(PROFILES),
    "cluster_name": _matching(
        _CLUSTER_NAME,
        "must be 1 to 32 letters, digits or hyphens, start with a letter and not end with a hyphen",
    ),
    "account": _matching(_ACCOUNT, "must be a 12-digit AWS account id"),
    "region": _region,
    "az_count": _whole_number(2, MAX_AZ_COUNT),
    "vpc_cidr": _vpc_cidr,
    "nat_instance_type": _x86_instance_type("NAT (Amazon Linux 2023 x86_64)"),
    "nat_per_az": _boolean,
    "node_count": _whole_number(1, NODE_COUNT_LIMIT),
    "node_min_count": _whole_number(1, NODE_COUNT_LIMIT),
    "node_max_count": _whole_number(1, NODE_COUNT_LIMIT),
    "node_instance_type": _x86_instance_type("node (Flatcar x86_64)"),
    "node_volume_gb": _whole_number(8, 16384, " (GiB, gp3's range from the image's 8 GiB)"),
    "node_image_channel": _one_of(NODE_IMAGE_CHANNELS),
    "node_image_id": _matching(_AMI_ID, "must be an AMI id such as ami-0123456789abcdef0"),
    "key_pair_name": _matching(
        _KEY_PAIR_NAME, "must be 1 to 255 printable ASCII characters with no leading or trailing space (EC2)"
    ),
    "certificate_arn": _certificate_arn,
    "tls_policy": _one_of(TLS_1_2_POLICIES),
    "ingress_cidrs": _ingress_cidrs,
    "router_image": _image("quay.io/loyalty_nz/alchemy-router:v1.0.1"),
    "hello_world_image": _image("quay.io/loyalty_nz/alchemy-hello-world:v1.0.1"),
    "hello_world_instances": _whole_number(1, 20),
    "router_timeout_seconds": _whole_number(1, ROUTER_TIMEOUT_LIMIT_SECONDS),
    "etcd_discovery_url": _matching(_HTTPS_URL, "must be an https:// URL, e.g. https://discovery.etcd.io/TOKEN"),
}
