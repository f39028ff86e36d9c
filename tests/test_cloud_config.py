"""Cloud-config: rendered from data to YAML that coreos-cloudinit reads."""

from __future__ import annotations

import yaml

from alchemy_constructs.cloud_config import CloudConfig, Unit, WriteFile, environment_file


def rendered(config: CloudConfig) -> dict:
    text = config.render()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_multi_line_content_is_written_as_a_literal_block() -> None:
    text = CloudConfig(write_files=(WriteFile(path="/x", content="a\nb\n"),)).render()
    assert "content: |\n    a\n    b\n" in text


def test_the_update_strategy_is_rendered() -> None:
    assert rendered(CloudConfig(reboot_strategy="off"))["coreos"]["update"] == {"reboot_strategy": "off"}


def test_a_files_owner_and_permissions_are_left_to_the_defaults_unless_given() -> None:
    data = rendered(CloudConfig(write_files=(WriteFile(path="/x", content="a"), WriteFile("/y", "b", "0755"))))
    assert data["write_files"] == [
        {"path": "/x", "content": "a"},
        {"path": "/y", "permissions": "0755", "content": "b"},
    ]


def test_yaml_special_values_stay_strings() -> None:
    data = rendered(CloudConfig(write_files=(WriteFile(path="/x", content="yes", permissions="0644"),)))
    assert data["write_files"][0]["content"] == "yes"
    assert data["write_files"][0]["permissions"] == "0644"


def test_environment_file_keeps_order() -> None:
    assert environment_file({"B": "2", "A": "1"}) == "B=2\nA=1\n"


def test_document_starts_with_the_cloud_config_header() -> None:
    assert CloudConfig().render().splitlines()[0] == "#cloud-config"


def test_cdk_tokens_survive_rendering_intact() -> None:
    token = "${Token[AWS.Region.9]}"
    config = CloudConfig(write_files=(WriteFile(path="/etc/environment", content=environment_file({"R": token})),))
    assert f"R={token}\n" in config.render()


def test_units_keep_their_order_and_keys() -> None:
    data = rendered(CloudConfig(units=(Unit(name="a.service", mask=True), Unit(name="b.service", command="start"))))
    assert data["coreos"]["units"] == [{"name": "a.service", "mask": True}, {"name": "b.service", "command": "start"}]
