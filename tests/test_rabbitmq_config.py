"""RabbitMQ's rendered configuration, checked against the keys RabbitMQ 4.3 documents."""

from __future__ import annotations

import re

import pytest

from alchemy_constructs.rabbitmq_config import (
    ENABLED_PLUGINS,
    RABBITMQ_IMAGE,
    SERVICE_USERS,
    RabbitMqConfig,
    ServicePermissions,
    enabled_plugins,
)

DOCUMENTED_KEYS_4_3 = {
    # rabbitmq.com/docs/configure: the core rabbitmq.conf reference.
    "listeners.tcp.default",
    "loopback_users.guest",
    "default_user",
    "default_pass",
    "default_vhost",
    "queue_leader_locator",
    "log.console",
    "log.console.level",
    "log.file",
    "log.file.level",
    "vm_memory_high_watermark.relative",
    "disk_free_limit.absolute",
    # rabbitmq.com/docs/management
    "management.tcp.port",
    "management.tcp.ip",
    # rabbitmq.com/docs/cluster-formation (peer discovery, AWS backend)
    "cluster_formation.peer_discovery_backend",
    "cluster_formation.aws.region",
    "cluster_formation.aws.use_autoscaling_group",
    "cluster_formation.aws.use_private_ip",
    "cluster_formation.target_cluster_size_hint",
    "cluster_formation.discovery_retry_limit",
    "cluster_formation.discovery_retry_interval",
    "cluster_formation.node_cleanup.interval",
    "cluster_formation.node_cleanup.only_log_warning",
    # rabbitmq.com/docs/deprecated-features
    "deprecated_features.permit.transient_nonexcl_queues",
}
"""Keys of rabbitmq.conf that RabbitMQ 4.3's documentation lists (the subset this project may use)."""

REMOVED_OR_INERT_IN_4_3 = {
    "cluster_partition_handling",  # accepted but without effect since Mnesia's removal in 4.3
    "queue_master_locator",  # denied by default in 4.3; queue_leader_locator replaces it
    "cluster_formation.classic_config.nodes.1",  # a static peer list: what this design avoids
}


def rendered() -> dict[str, str]:
    lines = RabbitMqConfig(cluster_size_hint=3).rabbitmq_conf().splitlines()
    pairs = [re.fullmatch(r"([\w.]+) = (\S+)", line) for line in lines]
    assert all(pairs), lines
    return {match[1]: match[2] for match in pairs if match}


def test_every_key_is_documented_for_the_pinned_version() -> None:
    assert RABBITMQ_IMAGE.startswith("rabbitmq:4.3.")
    assert set(rendered()) <= DOCUMENTED_KEYS_4_3


def test_no_removed_or_inert_key() -> None:
    assert not set(rendered()) & REMOVED_OR_INERT_IN_4_3


def test_transient_non_exclusive_queues_of_the_alchemy_clients_are_permitted() -> None:
    assert rendered()["deprecated_features.permit.transient_nonexcl_queues"] == "true"


def test_peers_come_from_the_auto_scaling_group_by_private_ip() -> None:
    settings = rendered()
    assert settings["cluster_formation.peer_discovery_backend"] == "aws"
    assert settings["cluster_formation.aws.use_autoscaling_group"] == "true"
    assert settings["cluster_formation.aws.use_private_ip"] == "true"


def test_cluster_size_hint_follows_the_node_group() -> None:
    assert "cluster_formation.target_cluster_size_hint = 5\n" in RabbitMqConfig(cluster_size_hint=5).rabbitmq_conf()


def test_queues_are_spread_over_the_nodes() -> None:
    assert rendered()["queue_leader_locator"] == "balanced"


def test_guest_stays_local_and_no_credentials_are_in_the_file() -> None:
    settings = rendered()
    assert settings["loopback_users.guest"] == "true"
    assert not {"default_user", "default_pass"} & set(settings)


def test_enabled_plugins_is_an_erlang_list_with_peer_discovery() -> None:
    assert enabled_plugins() == "[rabbitmq_management,rabbitmq_peer_discovery_aws].\n"
    assert "rabbitmq_peer_discovery_aws" in ENABLED_PLUGINS


def test_management_ui_listens_on_loopback_only() -> None:
    assert rendered()["management.tcp.ip"] == "127.0.0.1"


def test_survivors_forget_members_whose_instance_left_the_group() -> None:
    settings = rendered()
    assert settings["cluster_formation.node_cleanup.only_log_warning"] == "false"
    assert settings["cluster_formation.node_cleanup.interval"] == "30"


def test_every_service_has_a_user_of_its_own() -> None:
    assert set(SERVICE_USERS) == {"router", "hello_world"}


def test_permissions_are_the_agreed_regexes() -> None:
    assert SERVICE_USERS["router"] == ServicePermissions(
        configure=r"^(router(\..*)?|resources\.exchange)$",
        write=r"^(router(\..*)?|resources\.exchange|amq\.default)$",
        read=r"^(router(\..*)?|resources\.exchange)$",
    )


@pytest.mark.parametrize("name", ["router", "router.response.4f1c", "resources.exchange"])
def test_router_may_configure_and_read_its_own_queues_and_the_shared_exchange(name: str) -> None:
    permissions = SERVICE_USERS["router"]
    assert re.fullmatch(permissions.configure, name)
    assert re.fullmatch(permissions.read, name)


@pytest.mark.parametrize("name", ["hello_world", "hello_world.x", "routerx", "amq.default", "resources-exchange"])
def test_router_may_not_configure_what_is_not_its_own(name: str) -> None:
    assert not re.search(SERVICE_USERS["router"].configure, name)


def test_only_writing_may_go_through_the_default_exchange() -> None:
    permissions = SERVICE_USERS["hello_world"]
    assert re.fullmatch(permissions.write, "amq.default")
    assert not re.search(permissions.read, "amq.default")
