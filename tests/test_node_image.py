"""Node image: an explicit AMI, a cached Flatcar lookup, or a deploy-time parameter; never a made-up id."""

from __future__ import annotations

from aws_cdk.assertions import Match

from alchemy_constructs.node_image import FLATCAR_OWNER_ACCOUNT, IMAGE_ID_PARAMETER
from tests.synth import TEST_ACCOUNT, TEST_REGION, synthesize

OVERRIDE = "ami-0123456789abcdef0"


def node_image_id(synthesis_template: dict) -> object:
    (launch_template,) = [
        resource
        for resource in synthesis_template["Resources"].values()
        if resource["Type"] == "AWS::EC2::LaunchTemplate" and "ImageId" in resource["Properties"]["LaunchTemplateData"]
    ]
    return launch_template["Properties"]["LaunchTemplateData"]["ImageId"]


def test_agnostic_synth_asks_for_the_image_at_deploy_time() -> None:
    synthesis = synthesize()
    synthesis.template.has_parameter(
        IMAGE_ID_PARAMETER, {"Type": "AWS::EC2::Image::Id", "Description": Match.string_like_regexp("node_image_id")}
    )
    assert node_image_id(synthesis.template_json) == {"Ref": IMAGE_ID_PARAMETER}


def test_the_parameter_has_no_default_so_deploy_stops_without_one() -> None:
    assert "Default" not in synthesize().template_json["Parameters"][IMAGE_ID_PARAMETER]


def test_override_is_used_as_given() -> None:
    synthesis = synthesize(node_image_id=OVERRIDE)
    assert node_image_id(synthesis.template_json) == OVERRIDE
    assert IMAGE_ID_PARAMETER not in synthesis.template_json.get("Parameters", {})


def test_bound_synth_looks_up_the_newest_flatcar_image_of_the_channel() -> None:
    synthesis = synthesize(account=TEST_ACCOUNT, region=TEST_REGION, node_image_channel="beta")
    (lookup,) = [missing for missing in synthesis.missing_lookups if missing["provider"] == "ami"]
    assert lookup["props"]["owners"] == [FLATCAR_OWNER_ACCOUNT]
    assert lookup["props"]["filters"] == {
        "name": ["Flatcar-beta-*-hvm"],
        "architecture": ["x86_64"],
        "state": ["available"],
        "image-type": ["machine"],
    }
    assert (lookup["props"]["account"], lookup["props"]["region"]) == (TEST_ACCOUNT, TEST_REGION)


def test_bound_synth_uses_the_cached_lookup_from_cdk_context_json() -> None:
    first = synthesize(account=TEST_ACCOUNT, region=TEST_REGION)
    (lookup,) = [missing for missing in first.missing_lookups if missing["provider"] == "ami"]
    cached = synthesize(account=TEST_ACCOUNT, region=TEST_REGION, **{lookup["key"]: OVERRIDE})
    assert node_image_id(cached.template_json) == OVERRIDE
    assert IMAGE_ID_PARAMETER not in cached.template_json.get("Parameters", {})


def test_pending_lookup_passes_validation_so_the_cli_can_look_up_and_synthesize_again() -> None:
    assert synthesize(account=TEST_ACCOUNT, region=TEST_REGION).passed_validation
