"""Router load balancer: classic ELB, listeners, health check, draining, access logs, who may connect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from aws_cdk.region_info import RegionInfo

from tests.builders import elb_template

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


@pytest.fixture(scope="module")
def template() -> Template:
    return elb_template()


def elb_properties(template: Template) -> dict:
    (resource,) = template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer").values()
    return resource["Properties"]


def test_is_one_internet_facing_classic_elb(template: Template) -> None:
    template.resource_count_is("AWS::ElasticLoadBalancing::LoadBalancer", 1)
    template.resource_count_is("AWS::ElasticLoadBalancingV2::LoadBalancer", 0)
    assert elb_properties(template)["Scheme"] == "internet-facing"


def test_lives_in_the_public_subnets(template: Template) -> None:
    public_subnets = template.find_resources("AWS::EC2::Subnet", {"Properties": {"MapPublicIpOnLaunch": True}})
    assert sorted(ref["Ref"] for ref in elb_properties(template)["Subnets"]) == sorted(public_subnets)


def test_balances_across_zones(template: Template) -> None:
    assert elb_properties(template)["CrossZone"] is True


def test_http_80_goes_to_router_port_8080(template: Template) -> None:
    assert elb_properties(template)["Listeners"] == [
        {"LoadBalancerPort": "80", "Protocol": "http", "InstancePort": "8080", "InstanceProtocol": "http"}
    ]


def test_https_443_goes_to_8080_when_a_certificate_is_given() -> None:
    listeners = elb_properties(elb_template(certificate_arn=CERTIFICATE))["Listeners"]
    assert {
        "LoadBalancerPort": "443",
        "Protocol": "https",
        "InstancePort": "8080",
        "InstanceProtocol": "http",
        "SSLCertificateId": CERTIFICATE,
        "PolicyNames": ["TLS-ELBSecurityPolicy-TLS-1-2-2017-01"],
    } in listeners


def test_no_https_listener_without_a_certificate(template: Template) -> None:
    assert all(listener["LoadBalancerPort"] != "443" for listener in elb_properties(template)["Listeners"])


def test_health_check_asks_the_routers_health_endpoint_by_default(template: Template) -> None:
    assert elb_properties(template)["HealthCheck"] == {
        "Target": "HTTP:8080/_alchemy/health",
        "HealthyThreshold": "2",
        "UnhealthyThreshold": "5",
        "Interval": "30",
        "Timeout": "5",
    }


def test_health_check_is_tcp_without_a_path() -> None:
    health_check = elb_properties(elb_template(health_check_path=None))["HealthCheck"]
    assert health_check["Target"] == "TCP:8080"


def test_https_listener_allows_tls_1_2_only() -> None:
    properties = elb_properties(elb_template(certificate_arn=CERTIFICATE))
    assert properties["Policies"] == [
        {
            "PolicyName": "TLS-ELBSecurityPolicy-TLS-1-2-2017-01",
            "PolicyType": "SSLNegotiationPolicyType",
            "Attributes": [{"Name": "Reference-Security-Policy", "Value": "ELBSecurityPolicy-TLS-1-2-2017-01"}],
        }
    ]
    (https,) = [listener for listener in properties["Listeners"] if listener["LoadBalancerPort"] == "443"]
    assert https["PolicyNames"] == ["TLS-ELBSecurityPolicy-TLS-1-2-2017-01"]


def test_no_ssl_policy_without_an_https_listener(template: Template) -> None:
    assert "Policies" not in elb_properties(template)


def test_a_policy_that_allows_older_tls_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"tls_policy must be a TLS 1.2-only classic ELB policy \(ELBSecurityPolicy-TLS-1-2-2017-01\); "
        r"received 'ELBSecurityPolicy-2016-08'",
    ):
        elb_template(certificate_arn=CERTIFICATE, tls_policy="ELBSecurityPolicy-2016-08")


def test_connection_draining_is_on(template: Template) -> None:
    assert elb_properties(template)["ConnectionDrainingPolicy"] == {"Enabled": True, "Timeout": 60}


def test_access_logs_go_to_the_log_bucket_every_5_minutes(template: Template) -> None:
    (bucket_id,) = template.find_resources("AWS::S3::Bucket")
    assert elb_properties(template)["AccessLoggingPolicy"] == {
        "Enabled": True,
        "EmitInterval": 5,
        "S3BucketName": {"Ref": bucket_id},
        "S3BucketPrefix": "elb",
    }


NO_VALUE = object()


def deployed(value: Any, *, template: Mapping[str, Any], region: str, partition: str = "aws") -> Any:
    """``value`` as CloudFormation would resolve it in ``region`` (the functions this policy uses).

    ``Fn::FindInMap`` fails for a key its map lacks, as CloudFormation fails the deployment.
    """

    def holds(expression: dict[str, Any]) -> bool:
        if "Fn::Not" in expression:
            return not holds(expression["Fn::Not"][0])
        left, right = (deployed(side, template=template, region=region) for side in expression["Fn::Equals"])
        return bool(left == right)

    def condition(name: str) -> bool:
        return holds(template["Conditions"][name])

    if isinstance(value, list):
        items = [deployed(item, template=template, region=region) for item in value]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": "AWS::Region"}:
        return region
    if value == {"Ref": "AWS::Partition"}:
        return partition
    if value == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    if "Fn::If" in value:
        name, when_true, when_false = value["Fn::If"]
        return deployed(when_true if condition(name) else when_false, template=template, region=region)
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(deployed(part, template=template, region=region)) for part in parts)
    if "Fn::FindInMap" in value:
        name, key, attribute = (deployed(part, template=template, region=region) for part in value["Fn::FindInMap"])
        return template["Mappings"][name][key][attribute]
    resolved = {key: deployed(item, template=template, region=region) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


def log_delivery_principals(template: Template, region: str) -> dict[str, Any]:
    template_json = template.to_json()
    (policy,) = template.find_resources("AWS::S3::BucketPolicy").values()
    (statement,) = [
        statement
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement.get("Sid") == "ElbAccessLogDelivery"
    ]
    principal: dict[str, Any] = deployed(statement["Principal"], template=template_json, region=region)
    return principal


def test_elb_log_delivery_may_write_access_logs_as_the_service(template: Template) -> None:
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "s3:PutObject",
                                "Effect": "Allow",
                                "Principal": Match.object_like(
                                    {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
                                ),
                                "Sid": "ElbAccessLogDelivery",
                            }
                        )
                    ]
                )
            }
        },
    )


@pytest.mark.parametrize("region", sorted(info.name for info in RegionInfo.regions))
def test_log_delivery_works_in_every_region_cdk_knows(template: Template, region: str) -> None:
    """Older regions deliver from their ELB account, newer ones as the service principal."""
    account = RegionInfo.get(region).elbv2_account
    principal = log_delivery_principals(template, region)
    assert principal["Service"] == "logdelivery.elasticloadbalancing.amazonaws.com"
    assert principal.get("AWS") == (None if account is None else f"arn:aws:iam::{account}:root")


def test_a_region_newer_than_cdk_is_the_one_the_map_lacks(template: Template) -> None:
    """What this CDK version cannot know fails as before; upgrading aws-cdk-lib adds the region."""
    with pytest.raises(KeyError, match=r"xx-future-1"):
        log_delivery_principals(template, "xx-future-1")


def test_elb_waits_for_the_bucket_policy(template: Template) -> None:
    (policy_id,) = template.find_resources("AWS::S3::BucketPolicy")
    (elb,) = template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer").values()
    assert policy_id in elb["DependsOn"]


def test_listeners_open_to_anywhere_by_default(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {"SecurityGroupIngress": [Match.object_like({"CidrIp": "0.0.0.0/0", "FromPort": 80, "ToPort": 80})]},
    )


def test_listeners_open_only_to_the_ingress_cidrs() -> None:
    template = elb_template(certificate_arn=CERTIFICATE, ingress_cidrs=("203.0.113.0/24",))
    (group,) = template.find_resources("AWS::EC2::SecurityGroup").values()
    rules = {(rule["CidrIp"], rule["FromPort"]) for rule in group["Properties"]["SecurityGroupIngress"]}
    assert rules == {("203.0.113.0/24", 80), ("203.0.113.0/24", 443)}


def test_empty_ingress_cidrs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ingress_cidrs must name at least one CIDR block; received an empty list"):
        elb_template(ingress_cidrs=())
