"""NAT image: pinned in cdk.context.json or given once at deploy, never re-resolved from SSM on an update."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Stack

from alchemy_constructs.nat_image import IMAGE_ID_PARAMETER, NAT_IMAGE_SSM_PARAMETER, NatImage
from tests.synth import CACHED_LOOKUPS, TEST_ACCOUNT, TEST_REGION, VARIANTS, synthesize

CACHED_NAT_IMAGE = CACHED_LOOKUPS[
    f"ssm:account={TEST_ACCOUNT}:parameterName={NAT_IMAGE_SSM_PARAMETER}:region={TEST_REGION}"
]
BOUND = {"account": TEST_ACCOUNT, "region": TEST_REGION}


def nat_instances(template_json: dict[str, Any]) -> dict[str, Any]:
    return {
        logical_id: resource
        for logical_id, resource in template_json["Resources"].items()
        if resource["Type"] == "AWS::EC2::Instance"
    }


def test_no_parameter_is_resolved_from_ssm_on_every_update() -> None:
    """``BootstrapVersion`` is CDK's own and read only by its rules; it changes no resource."""
    parameters = synthesize().template_json["Parameters"]
    from_ssm = [name for name, spec in parameters.items() if spec["Type"].startswith("AWS::SSM::Parameter::Value")]
    assert from_ssm == ["BootstrapVersion"]


def test_agnostic_synth_takes_the_nat_image_as_a_parameter_without_default() -> None:
    synthesis = synthesize()
    parameter = synthesis.template_json["Parameters"][IMAGE_ID_PARAMETER]
    assert parameter["Type"] == "AWS::EC2::Image::Id"
    assert "Default" not in parameter
    for instance in nat_instances(synthesis.template_json).values():
        assert instance["Properties"]["ImageId"] == {"Ref": IMAGE_ID_PARAMETER}


def test_the_parameter_says_where_to_find_the_image() -> None:
    assert NAT_IMAGE_SSM_PARAMETER in synthesize().template_json["Parameters"][IMAGE_ID_PARAMETER]["Description"]


def test_bound_synth_uses_the_image_cached_in_the_context() -> None:
    synthesis = synthesize(**BOUND, **CACHED_LOOKUPS)
    for instance in nat_instances(synthesis.template_json).values():
        assert instance["Properties"]["ImageId"] == CACHED_NAT_IMAGE
    assert IMAGE_ID_PARAMETER not in synthesis.template_json["Parameters"]


def test_bound_synth_asks_the_cli_to_look_the_image_up_once() -> None:
    lookups = synthesize(**BOUND).missing_lookups
    assert {
        "provider": "ssm",
        "key": f"ssm:account={TEST_ACCOUNT}:parameterName={NAT_IMAGE_SSM_PARAMETER}:region={TEST_REGION}",
    } in [{"provider": lookup["provider"], "key": lookup["key"]} for lookup in lookups]


def test_settings_of_the_nodes_leave_the_nat_instance_untouched() -> None:
    """A deploy that changes only the nodes (or nothing) must not replace or update the NAT."""
    before = nat_instances(synthesize().template_json)
    after = nat_instances(synthesize(**VARIANTS["own_nodes"]).template_json)
    assert after == before


def test_only_the_emulator_reads_the_newest_image_at_deploy() -> None:
    """The local deploy loop names only the node image, so the emulator's template keeps CDK's SSM default."""
    image = NatImage(Stack(App(), "Agnostic"), "NatImage")
    image.resolve_latest_at_deploy()
    assert image.parameter is not None
    assert (image.parameter.type, image.parameter.default) == (
        "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        NAT_IMAGE_SSM_PARAMETER,
    )
