"""Cloud-config: rendered from data to YAML that coreos-cloudinit reads."""

from __future__ import annotations

import yaml

from alchemy_constructs.cloud_config import CloudConfig, DropIn, NodeBootstrap, Unit, WriteFile, environment_file


def rendered(config: CloudConfig) -> dict:
    text = config.render()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_document_starts_with_the_cloud_config_header() -> None:
    assert NodeBootstrap(region="eu-west-1", cluster_name="alchemy").cloud_config().render().splitlines()[0] == (
        "#cloud-config"
    )


def test_etc_environment_carries_the_seed_variables() -> None:
    data = rendered(NodeBootstrap(region="eu-west-1", cluster_name="alchemy").cloud_config())
    (environment,) = [f for f in data["write_files"] if f["path"] == "/etc/environment"]
    assert environment["content"].splitlines() == [
        "REGION_NAME=eu-west-1",
        "CLUSTER_NAME=alchemy",
        "PRIVATEIP=$private_ipv4",
        "PUBLICIP=$public_ipv4",
    ]
    assert environment["permissions"] == "0644"


def test_docker_is_enabled_and_started() -> None:
    data = rendered(NodeBootstrap(region="eu-west-1", cluster_name="alchemy").cloud_config())
    assert {"name": "docker.service", "enable": True, "command": "start"} in data["coreos"]["units"]


def test_no_deprecated_or_unknown_top_level_keys() -> None:
    data = rendered(NodeBootstrap(region="eu-west-1", cluster_name="alchemy").cloud_config())
    assert set(data) <= {"ssh_authorized_keys", "coreos", "write_files", "hostname", "users", "manage_etc_hosts"}
    assert not {"etcd", "etcd2", "fleet"} & set(data["coreos"])


def test_more_units_and_files_join_the_same_document() -> None:
    unit = Unit(name="hello.service", content="[Service]\nExecStart=/bin/true\n", command="start")
    extra = WriteFile(path="/opt/hello", content="hi\n", permissions="0600")
    data = rendered(
        NodeBootstrap(region="r", cluster_name="c", extra_units=(unit,), extra_files=(extra,)).cloud_config()
    )
    assert data["coreos"]["units"][-1] == {
        "name": "hello.service",
        "command": "start",
        "content": "[Service]\nExecStart=/bin/true\n",
    }
    assert data["write_files"][-1] == {
        "path": "/opt/hello",
        "owner": "root:root",
        "permissions": "0600",
        "content": "hi\n",
    }


def test_multi_line_content_is_written_as_a_literal_block() -> None:
    text = CloudConfig(write_files=(WriteFile(path="/x", content="a\nb\n"),)).render()
    assert "content: |\n    a\n    b\n" in text


def test_drop_ins_and_update_strategy_are_rendered() -> None:
    config = CloudConfig(
        units=(Unit(name="docker.service", drop_ins=(DropIn(name="10-x.conf", content="[Service]\n"),)),),
        reboot_strategy="off",
    )
    data = rendered(config)
    assert data["coreos"]["update"] == {"reboot_strategy": "off"}
    assert data["coreos"]["units"] == [
        {"name": "docker.service", "drop_ins": [{"name": "10-x.conf", "content": "[Service]\n"}]}
    ]


def test_cdk_tokens_survive_rendering_intact() -> None:
    token = "${Token[AWS.Region.9]}"
    assert f"REGION_NAME={token}\n" in NodeBootstrap(region=token, cluster_name="c").cloud_config().render()


def test_yaml_special_values_stay_strings() -> None:
    data = rendered(CloudConfig(write_files=(WriteFile(path="/x", content="yes", permissions="0644"),)))
    assert data["write_files"][0]["content"] == "yes"
    assert data["write_files"][0]["permissions"] == "0644"


def test_environment_file_keeps_order() -> None:
    assert environment_file({"B": "2", "A": "1"}) == "B=2\nA=1\n"
