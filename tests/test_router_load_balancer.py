"""Router load balancer: classic ELB, listeners, health check, draining, access logs, who may connect."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

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
    } in listeners


def test_no_https_listener_without_a_certificate(template: Template) -> None:
    assert all(listener["LoadBalancerPort"] != "443" for listener in elb_properties(template)["Listeners"])


def test_health_check_is_tcp_on_the_router_port_by_default(template: Template) -> None:
    assert elb_properties(template)["HealthCheck"] == {
        "Target": "TCP:8080",
        "HealthyThreshold": "2",
        "UnhealthyThreshold": "5",
        "Interval": "30",
        "Timeout": "5",
    }


def test_health_check_is_http_when_a_path_is_given() -> None:
    health_check = elb_properties(elb_template(health_check_path="/v1/hello"))["HealthCheck"]
    assert health_check["Target"] == "HTTP:8080/v1/hello"


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


def test_elb_log_delivery_may_write_access_logs(template: Template) -> None:
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
                                "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                            }
                        )
                    ]
                )
            }
        },
    )


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
