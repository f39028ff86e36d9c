"""RabbitMQ's node configuration, rendered from data.

Version choice: RabbitMQ 4.3 (pinned image tag below). The Alchemy clients declare service
queues ``durable: false`` and response queues non-durable with ``expires``: transient,
non-exclusive queues. RabbitMQ 4.x removed classic queue mirroring (the original's
``ha-mode exactly 3`` policy) and replicates only quorum queues and streams, which must be
durable, so no configuration can replicate these clients' queues. 4.3 denies transient
non-exclusive queues unless ``deprecated_features.permit.transient_nonexcl_queues`` is set
on every node, which this configuration does. Staying on 3.13 for mirroring would mean a
release line out of community support, whose mirroring was itself deprecated.

Availability the clients allow: queues are spread over the nodes (``queue_leader_locator =
balanced``), every node runs a broker and services connect to their own node's broker, and
the clients redeclare their queues when they reconnect. Messages queued on a node that dies
are lost with it; requests in flight then time out at the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RABBITMQ_IMAGE = "rabbitmq:4.3.0-management"
"""Pinned broker image: RabbitMQ 4.3 with the management plugin."""

ENABLED_PLUGINS = ("rabbitmq_management", "rabbitmq_peer_discovery_aws")
ADMIN_USER = "alchemy"
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672


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
            "cluster_formation.node_cleanup.only_log_warning": "true",
            # The Alchemy clients declare transient, non-exclusive queues.
            "deprecated_features.permit.transient_nonexcl_queues": "true",
            "queue_leader_locator": "balanced",
            "listeners.tcp.default": str(AMQP_PORT),
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
