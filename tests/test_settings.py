"""Settings: defaults, parsing of -c strings, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import app as cdk_app
from alchemy_stack.settings import (
    _PARSERS,
    EMPTY_IS_REFUSED,
    NODE_COUNT_LIMIT,
    Settings,
    SettingsError,
    UnknownSettingError,
)
from tests.synth import CDK_CONTEXT, ROOT, TEST_ACCOUNT, TEST_CERTIFICATE, TEST_REGION, cdk_app_context


def settings(**context: Any) -> Settings:
    return Settings.from_context(context)


PROFILE_DEPENDENT = ("az_count", "nat_per_az")
"""Null in cdk.json: the profile chooses them (a value there would count as explicitly given)."""


def test_cdk_json_holds_every_setting_with_its_code_default() -> None:
    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    defaults.update(dict.fromkeys(PROFILE_DEPENDENT))
    in_cdk_json = {key: CDK_CONTEXT[key] for key in defaults}
    in_cdk_json["ingress_cidrs"] = tuple(in_cdk_json["ingress_cidrs"])
    assert in_cdk_json == defaults


def test_every_setting_has_a_parser() -> None:
    assert set(_PARSERS) == {field.name for field in dataclasses.fields(Settings)}


def test_defaults_from_cdk_json_are_valid() -> None:
    assert Settings.from_context(CDK_CONTEXT) == Settings()


def test_default_node_group_is_three_fixed_nodes() -> None:
    default = Settings()
    assert (default.min_nodes, default.node_count, default.max_nodes) == (3, 3, 3)


def test_images_default_to_being_built_from_the_project() -> None:
    assert (Settings().router_image, Settings().hello_world_image) == (None, None)


def test_router_timeout_defaults_to_30_seconds_and_parses_from_the_command_line() -> None:
    assert (Settings().router_timeout_seconds, settings(router_timeout_seconds="120").router_timeout_seconds) == (
        30,
        120,
    )


@pytest.mark.parametrize("value", ["0", "301", "1.5", "soon"])
def test_router_timeout_outside_1_to_300_seconds_is_refused(value: str) -> None:
    with pytest.raises(
        SettingsError,
        match=rf"^invalid setting router_timeout_seconds='{value}': must be a whole number from 1 to 300$",
    ):
        settings(router_timeout_seconds=value)


def test_default_is_environment_agnostic() -> None:
    assert (Settings().account, Settings().region) == (None, None)


def test_command_line_strings_are_parsed_to_their_types() -> None:
    parsed = settings(node_count="4", nat_per_az="true", az_count="3", node_volume_gb="100")
    assert (parsed.node_count, parsed.nat_per_az, parsed.az_count, parsed.node_volume_gb) == (4, True, 3, 100)


def test_empty_value_means_default_where_the_default_is_no_wider() -> None:
    parsed = settings(node_count="", key_pair_name=" ", etcd_discovery_url="")
    assert (parsed.node_count, parsed.key_pair_name, parsed.etcd_discovery_url) == (3, None, None)


def test_ingress_cidrs_accepts_a_comma_separated_string() -> None:
    assert settings(ingress_cidrs="203.0.113.0/24, 198.51.100.0/24").ingress_cidrs == (
        "203.0.113.0/24",
        "198.51.100.0/24",
    )


def test_min_and_max_default_to_node_count() -> None:
    parsed = settings(node_count=5)
    assert (parsed.min_nodes, parsed.max_nodes) == (5, 5)


def test_cdk_own_context_keys_are_not_settings() -> None:
    parsed = settings(**{"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:enable-path-metadata": True})
    assert parsed == Settings()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("node_count", 0, r"invalid setting node_count=0: must be a whole number from 1 to 50"),
        ("node_count", "0", r"node_count='0': must be a whole number from 1 to 50"),
        ("node_count", -1, r"node_count=-1: must be a whole number from 1 to 50"),
        ("node_count", "three", r"node_count='three': must be a whole number from 1 to 50"),
        ("node_count", 2.5, r"node_count=2.5: must be a whole number"),
        ("node_count", True, r"node_count=True: must be a whole number"),
        ("node_count", NODE_COUNT_LIMIT + 1, r"node_count=51: must be a whole number from 1 to 50"),
        ("node_max_count", 0, r"node_max_count=0: must be a whole number from 1 to 50"),
        ("az_count", 1, r"az_count=1: must be a whole number from 2 to 6"),
        ("az_count", 7, r"az_count=7: must be a whole number from 2 to 6"),
        ("vpc_cidr", "10.0.0.0", r"vpc_cidr='10.0.0.0': must be an IPv4 CIDR block"),
        ("vpc_cidr", "10.0.0.1/16", r"vpc_cidr='10.0.0.1/16': must be an IPv4 CIDR block with no host bits"),
        ("vpc_cidr", "300.0.0.0/16", r"vpc_cidr='300.0.0.0/16': must be an IPv4 CIDR block"),
        ("vpc_cidr", "10.0.0.0/8", r"vpc_cidr='10.0.0.0/8': .*prefix from /16 to /28"),
        ("vpc_cidr", "10.0.0.0/23", r"vpc_cidr='10.0.0.0/23': too small for 4 /24 subnets .*/16 to /22"),
        ("node_instance_type", "large", r"node_instance_type='large': must be an EC2 instance type of the form"),
        ("node_instance_type", "M5.large", r"node_instance_type='M5.large': must be an EC2 instance type"),
        ("nat_instance_type", "t3", r"nat_instance_type='t3': must be an EC2 instance type of the form"),
        ("node_volume_gb", 4, r"node_volume_gb=4: must be a whole number from 8 to 16384"),
        ("nat_per_az", "yes", r"nat_per_az='yes': must be true or false"),
        ("node_image_channel", "edge", r"node_image_channel='edge': must be one of stable, beta, alpha, lts"),
        ("node_image_id", "ami-123", r"node_image_id='ami-123': must be an AMI id"),
        ("certificate_arn", "arn:aws:acm:eu-west-1:123:certificate/x", r"certificate_arn=.*must be an ACM certificate"),
        ("certificate_arn", "my-cert", r"certificate_arn='my-cert': must be an ACM certificate ARN"),
        ("ingress_cidrs", "0.0.0.0", r"ingress_cidrs='0.0.0.0': must be a list .* of IPv4 CIDR blocks"),
        ("ingress_cidrs", ["10.0.0.0/8", "bad"], r"ingress_cidrs='bad': must be a list"),
        ("ingress_cidrs", 5, r"ingress_cidrs=5: must be a list"),
        ("cluster_name", "my_cluster", r"cluster_name='my_cluster': must be 1 to 32 letters, digits or hyphens"),
        ("cluster_name", "1alchemy", r"cluster_name='1alchemy': .*start with a letter"),
        ("cluster_name", "alchemy-", r"cluster_name='alchemy-': .*not end with a hyphen"),
        ("cluster_name", "a" * 33, r"cluster_name='a{33}': must be 1 to 32"),
        ("account", "1234", r"account='1234': must be a 12-digit AWS account id"),
        ("region", "Europe", r"region='Europe': must be an AWS region this CDK version knows"),
        ("key_pair_name", "\u00e9t\u00e9", r"key_pair_name='\u00e9t\u00e9': must be 1 to 255 printable ASCII"),
    ],
)
def test_bad_value_is_refused_with_key_value_and_allowed(key: str, value: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(**{key: value})


def test_valid_acm_certificate_arn_is_accepted() -> None:
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    assert settings(certificate_arn=arn).certificate_arn == arn


def test_valid_iam_server_certificate_arn_is_accepted() -> None:
    arn = "arn:aws:iam::123456789012:server-certificate/alchemy"
    assert settings(certificate_arn=arn).certificate_arn == arn


def test_min_above_node_count_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"node_min_count=4: must not be above node_count \(3\)"):
        settings(node_count=3, node_min_count=4)


def test_max_below_node_count_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"node_max_count=2: must not be below node_count \(3\)"):
        settings(node_count=3, node_max_count=2)


def test_three_azs_need_a_larger_vpc_than_two() -> None:
    assert settings(vpc_cidr="10.0.0.0/22", az_count=2).vpc_cidr == "10.0.0.0/22"
    with pytest.raises(SettingsError, match=r"too small for 6 /24 subnets \(3 AZs x 2\); use a prefix from /16 to /21"):
        settings(vpc_cidr="10.0.0.0/22", az_count=3)


def test_account_without_region_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"invalid setting region=None: must be set together with account"):
        settings(account="123456789012")


def test_typo_is_answered_with_the_closest_setting() -> None:
    with pytest.raises(UnknownSettingError, match=r"unknown setting node_cout=3: did you mean 'node_count'\?"):
        settings(node_cout=3)


def test_unknown_setting_far_from_any_is_pointed_to_the_readme() -> None:
    with pytest.raises(UnknownSettingError, match=r"unknown setting colour='blue': see the settings table in README"):
        settings(colour="blue")


def test_error_message_is_one_line() -> None:
    with pytest.raises(SettingsError) as raised:
        settings(vpc_cidr="10.0.0.0/23")
    assert "\n" not in str(raised.value)


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for field in dataclasses.fields(Settings):
        assert f"| `{field.name}` |" in readme, field.name


PRODUCTION = {
    "profile": "production",
    "certificate_arn": ("arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
}


def test_default_profile_is_the_cheap_one() -> None:
    default = Settings()
    assert (default.profile, default.plain_http, default.log_retention_days) == ("default", True, 30)


def test_production_runs_one_nat_instance_per_az_https_only_with_long_retention() -> None:
    production = settings(**PRODUCTION)
    assert production.nat_per_az
    assert not production.plain_http
    assert production.log_retention_days == 400


@pytest.mark.parametrize(("key", "value"), [("az_count", 2), ("node_count", 2), ("node_min_count", 2)])
def test_production_refuses_fewer_than_three_azs_or_nodes(key: str, value: int) -> None:
    with pytest.raises(SettingsError, match=rf"{key}={value}: the production profile needs at least 3"):
        settings(**{**PRODUCTION, "node_count": 3, key: value})


def test_production_refuses_to_run_without_a_certificate() -> None:
    with pytest.raises(SettingsError, match=r"certificate_arn=None: the production profile serves HTTPS only"):
        settings(profile="production")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"profile='prod': must be one of default, production"):
        settings(profile="prod")


# --- Through the app's entry point, as `cdk synth -c key=value` runs it (in-process).


def main_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], **overrides: Any) -> str:
    """The one line ``app.main`` prints for these settings; it must exit 1 and write no template."""
    app = cdk_app.create_app(context=cdk_app_context(**overrides), outdir=str(tmp_path))
    assert cdk_app.main(app) == 1
    assert not (tmp_path / f"{cdk_app.STACK_ID}.template.json").exists()
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error.rstrip("\n")


@pytest.mark.parametrize("key", ["ingressCidrs", "IngressCidrs", "ingress-cidrs", "INGRESS_CIDRS", "Ingress-CIDRs"])
def test_every_spelling_of_a_setting_other_than_its_own_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    assert main_error(tmp_path, capsys, **{key: "203.0.113.0/24"}) == (
        f"error: unknown setting {key}='203.0.113.0/24': did you mean 'ingress_cidrs'?"
    )


def test_a_key_close_to_no_setting_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_error(tmp_path, capsys, colour="blue") == (
        "error: unknown setting colour='blue': see the settings table in README.md"
    )


@pytest.mark.parametrize(
    "key",
    [
        "cli-telemetry",
        "acknowledged-issue-numbers",
        "aws:cdk:enable-path-metadata",
        "aws:cdk:enable-asset-metadata",
        "aws:cdk:version-reporting",
        "aws:cdk:bundling-stacks",
        "aws-cdk:enableDiffNoFail",
        "@aws-cdk/core:failSynthOnValidationErrors",
        f"availability-zones:account={TEST_ACCOUNT}:region={TEST_REGION}",
    ],
)
def test_keys_the_cdk_cli_writes_are_not_settings(key: str) -> None:
    assert settings(**{key: True}) == Settings()


@pytest.mark.parametrize("key", sorted(EMPTY_IS_REFUSED))
@pytest.mark.parametrize("blank", ["", "  ", "\t"])
def test_blank_is_refused_where_the_default_would_widen_access_or_change_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, blank: str
) -> None:
    assert main_error(tmp_path, capsys, **{key: blank}) == (
        f"error: invalid setting {key}={blank!r}: must not be empty (leave the key out, or null in cdk.json, "
        "for the default)"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cluster_name", "alchemy\n"),
        ("node_count", "3\n"),
        ("node_count", "\u0663"),  # ARABIC-INDIC DIGIT THREE: int() would read it as 3
        ("node_count", " 3"),
        ("account", "12345678901\u0662"),
        ("vpc_cidr", "10.0.0.0/16\n"),
        ("vpc_cidr", "\u0661\u0660.0.0.0/16"),
        ("ingress_cidrs", "203.0.113.0/24\n"),
        ("node_image_id", "ami-0123456789abcdef0\n"),
        ("region", "eu-west-1\n"),
        ("router_image", "quay.io/loyalty_nz/alchemy-router:v1.0.1\n"),
        ("etcd_discovery_url", "https://discovery.etcd.io/token\n"),
    ],
)
def test_patterns_match_the_whole_value_in_ascii_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    assert main_error(tmp_path, capsys, **{key: value}).startswith(f"error: invalid setting {key}={value!r}: ")


@pytest.mark.parametrize("key", ["node_instance_type", "nat_instance_type"])
@pytest.mark.parametrize(
    "instance_type", ["t4g.micro", "m7g.large", "c6gn.xlarge", "m7gd.large", "im4gn.large", "a1.large"]
)
def test_an_arm_instance_type_is_refused_for_x86_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, instance_type: str
) -> None:
    assert main_error(tmp_path, capsys, **{key: instance_type}).startswith(
        f"error: invalid setting {key}={instance_type!r}: must be an x86_64 instance type: "
    )


@pytest.mark.parametrize(
    "instance_type", ["t3.micro", "m5.large", "c6i.large", "m7a.large", "g4dn.xlarge", "r5dn.large"]
)
def test_x86_instance_types_are_accepted(instance_type: str) -> None:
    assert settings(node_instance_type=instance_type).node_instance_type == instance_type


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("key_pair_name", " ops", r"must be 1 to 255 printable ASCII characters with no leading or trailing space"),
        ("key_pair_name", "o" * 256, r"must be 1 to 255 printable ASCII characters"),
        ("router_image", "quay.io/loyalty_nz/alchemy-router:latest", r"pinned tag \(not latest\).*latest moves"),
        ("hello_world_image", "quay.io/loyalty_nz/alchemy-hello-world:LATEST", r"latest moves"),
        ("router_image", "quay.io/loyalty_nz/alchemy-router", r"must be a container image with a pinned tag"),
        ("hello_world_image", "registry.local:5000/hello", r"must be a container image with a pinned tag"),
        ("router_image", "quay.io/" + "a" * 250 + ":v1", r"at most 255 characters \(Docker\)"),
        ("ingress_cidrs", "10.0.0.0/8, 10.0.0.0/8", r"'10.0.0.0/8': lists this CIDR block twice"),
        ("region", "eu-mars-1", r"must be an AWS region this CDK version knows"),
    ],
)
def test_values_aws_or_docker_would_refuse_at_deploy_are_refused_at_synth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, message: str
) -> None:
    error = main_error(tmp_path, capsys, **{key: value, **({"account": TEST_ACCOUNT} if key == "region" else {})})
    assert error.startswith(f"error: invalid setting {key}=")
    assert re.search(message, error), error


def test_more_ingress_rules_than_a_security_group_holds_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cidrs = ",".join(f"10.0.{index}.0/24" for index in range(31))
    assert main_error(tmp_path, capsys, ingress_cidrs=cidrs, certificate_arn=TEST_CERTIFICATE) == (
        "error: invalid setting ingress_cidrs='31 CIDR blocks': one rule per CIDR block and listener port (2) must "
        "stay within a security group's 60 inbound rules: at most 30 blocks"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"region": "us-east-1"},
            "its region eu-west-1 is not the target's region us-east-1",
        ),
        (
            {"account": "111122223333"},
            "its account 123456789012 is not the target's account 111122223333",
        ),
        (
            {"region": "cn-north-1"},
            "its partition aws is not the target's partition aws-cn",
        ),
    ],
)
def test_the_certificate_must_be_in_the_target_partition_account_and_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, str], message: str
) -> None:
    context = {"account": TEST_ACCOUNT, "region": TEST_REGION, "certificate_arn": TEST_CERTIFICATE, **overrides}
    assert main_error(tmp_path, capsys, **context) == (
        f"error: invalid setting certificate_arn={TEST_CERTIFICATE!r}: {message}: the ELB can only use a "
        "certificate in its own partition, account and region"
    )


def test_an_iam_certificate_of_another_account_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"its account 111122223333 is not the target's account 123456789012"):
        settings(
            account=TEST_ACCOUNT,
            region=TEST_REGION,
            certificate_arn="arn:aws:iam::111122223333:server-certificate/alchemy",
        )


def test_a_certificate_region_outside_its_partition_is_refused() -> None:
    arn = TEST_CERTIFICATE.replace("arn:aws:", "arn:aws-cn:")
    with pytest.raises(SettingsError, match=r"names region eu-west-1, which is not a region of partition aws-cn"):
        settings(certificate_arn=arn)


def test_production_is_one_setting_and_a_certificate() -> None:
    production = settings(profile="production", certificate_arn=TEST_CERTIFICATE)
    assert (production.az_count, production.node_count, production.min_nodes, production.nat_per_az) == (
        3,
        3,
        3,
        True,
    )


def test_production_keeps_an_explicit_stronger_value() -> None:
    assert settings(**PRODUCTION, az_count=4, node_count=5).az_count == 4


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("az_count", "2", "az_count=2: the production profile needs at least 3"),
        ("node_count", "2", "node_count=2: the production profile needs at least 3"),
        ("node_min_count", "2", "node_min_count=2: the production profile needs at least 3"),
        ("nat_per_az", "false", "nat_per_az=False: the production profile runs a NAT instance per AZ"),
    ],
)
def test_production_refuses_only_an_explicit_weaker_value_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, message: str
) -> None:
    assert main_error(tmp_path, capsys, **PRODUCTION, **{key: value}).startswith(f"error: invalid setting {message}")
