"""RabbitMQ's node configuration, rendered from data.

Version choice: RabbitMQ 4.3 (pinned image tag below). The Alchemy clients declare service
queues ``durable: false`` and response queues non-durable with ``expires``: transient,
non-exclusive queues. RabbitMQ 4.x removed classic queue mirroring (the original's
``ha-mode exactly 3`` policy) and replicates only quorum queues and streams, which must be
durable, so no configuration can replicate these clients' queues. 4.3 denies transient
non-exclusive queues unless ``deprecated_features.permit.transient_nonexcl_queues`` is set
on every node, which this configuration does. Staying on 3.13 for mirroring would mean a
release line out of community support, whose mirroring was itself deprecated.

Members that die: RabbitMQ 4.x keeps its metadata in Khepri (Raft), which needs a majority of the
members it lists. A node that died without leaving (``rabbitmq-leave``) stays listed unless the
survivors forget it, so ``cluster_formation.node_cleanup`` removes members that peer discovery no
longer knows, every 30 seconds. Peer discovery lists the Auto Scaling group's instances, and a
rebooting (or stopped) instance stays in the group, so a reboot is never mistaken for a death whatever
the interval: only a member whose instance left the group is forgotten. 30 s keeps a killed node's
slot from lingering while the group launches its replacement (minutes), at the cost of one EC2
API call per node per interval.

Availability the clients allow: queues are spread over the nodes (``queue_leader_locator =
balanced``), every node runs a broker and services connect to their own node's broker, and
the clients redeclare their queues when they reconnect. Messages queued on a node that dies
are lost with it; requests in flight then time out at the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

RABBITMQ_IMAGE = "rabbitmq:4.3.0-management"
"""Pinned broker image: RabbitMQ 4.3 with the management plugin."""

ENABLED_PLUGINS = ("rabbitmq_management", "rabbitmq_peer_discovery_aws")
ADMIN_USER = "alchemy"
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672
MANAGEMENT_ADDRESS = "127.0.0.1"
"""The management UI and API listen on the node's loopback only: reached through Session Manager port
forwarding, never from another node or a container."""
NODE_CLEANUP_INTERVAL_SECONDS = 30
SHARED_EXCHANGE = "resources.exchange"
DEFAULT_EXCHANGE = "amq.default"


@dataclass(frozen=True)
class ServicePermissions:
    """A broker user's permissions on vhost ``/``: regexes over queue and exchange names."""

    configure: str
    write: str
    read: str


def service_permissions(*, service: str) -> ServicePermissions:
    """What a service's own user may do: its queues (``<service>`` and ``<service>.<anything>``) and the
    shared topic exchange, plus publishing through the default exchange. Nothing of another service's."""
    own = f"{service}(\\..*)?"
    exchange = SHARED_EXCHANGE.replace(".", "\\.")
    default = DEFAULT_EXCHANGE.replace(".", "\\.")
    return ServicePermissions(
        configure=f"^({own}|{exchange})$",
        write=f"^({own}|{exchange}|{default})$",
        read=f"^({own}|{exchange})$",
    )


SERVICES = ("router", "hello_world")
"""Services with a broker user of their own; the user is named after the service."""
SERVICE_USERS: Mapping[str, ServicePermissions] = MappingProxyType(
    {service: service_permissions(service=service) for service in SERVICES}
)
"""Per-service broker users and their permissions (``node_scripts/rabbitmq-users`` creates them on the
nodes with the same regexes; a test holds the two equal)."""


@dataclass(frozen=True)
class RabbitMqConfig:
    """What differs between clusters; everything else is fixed policy below."""

    cluster_size_hint: int
    """How many nodes the cluster is expected to have (the node group's desired size)."""

    def settings(self) -> Mapping[str, str]:
        """``rabbitmq.conf`` keys and values, in the order they are written."""
        return {
            # Peers are the Auto Scaling group's instances, found through the EC2 API; nodes
            # are named after their private IP (RABBITMQ_USE_LONGNAME in the unit).
            "cluster_formation.peer_discovery_backend": "aws",
            "cluster_formation.aws.use_autoscaling_group": "true",
            "cluster_formation.aws.use_private_ip": "true",
            "cluster_formation.target_cluster_size_hint": str(self.cluster_size_hint),
            "cluster_formation.discovery_retry_limit": "60",
            "cluster_formation.discovery_retry_interval": "5000",
            # Survivors forget members whose instance left the group (see the module docstring).
            "cluster_formation.node_cleanup.interval": str(NODE_CLEANUP_INTERVAL_SECONDS),
            "cluster_formation.node_cleanup.only_log_warning": "false",
            # The Alchemy clients declare transient, non-exclusive queues.
            "deprecated_features.permit.transient_nonexcl_queues": "true",
            "queue_leader_locator": "balanced",
            "listeners.tcp.default": str(AMQP_PORT),
            "management.tcp.ip": MANAGEMENT_ADDRESS,
            "management.tcp.port": str(MANAGEMENT_PORT),
            "loopback_users.guest": "true",
            "log.console": "true",
            "log.console.level": "info",
            "log.file": "false",
        }

    def rabbitmq_conf(self) -> str:
        """The ``rabbitmq.conf`` file (sysctl format: ``key = value`` lines)."""
        return "".join(f"{key} = {value}\n" for key, value in self.settings().items())


def enabled_plugins() -> str:
    """The ``enabled_plugins`` file: an Erlang list term."""
    return f"[{','.join(ENABLED_PLUGINS)}].\n"
