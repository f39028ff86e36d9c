"""Node group: ASG from a launch template, its security, health and rollout behaviour."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match, Template

from alchemy_constructs.node_group import CLUSTER_PORTS, LIFECYCLE_HOOK_NAME, SESSION_MANAGER_ACTIONS
from tests.builders import node_group_template


@pytest.fixture(scope="module")
def template() -> Template:
    return node_group_template()


def launch_template_data(template: Template) -> dict:
    (resource,) = template.find_resources("AWS::EC2::LaunchTemplate").values()
    return resource["Properties"]["LaunchTemplateData"]


def security_group_id(template: Template, description_start: str) -> str:
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    (group_id,) = [
        key for key, value in groups.items() if value["Properties"]["GroupDescription"].startswith(description_start)
    ]
    return group_id


def test_asg_size_defaults_to_desired_for_min_and_max(template: Template) -> None:
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "3", "MaxSize": "3", "DesiredCapacity": "3"}
    )


def test_asg_size_follows_min_and_max() -> None:
    node_group_template(desired=3, minimum=2, maximum=6).has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "2", "MaxSize": "6", "DesiredCapacity": "3"}
    )


@pytest.mark.parametrize(("desired", "minimum", "maximum"), [(3, 4, 5), (3, 1, 2), (0, None, None)])
def test_inconsistent_capacity_is_refused(desired: int, minimum: int | None, maximum: int | None) -> None:
    with pytest.raises(ValueError, match=r"capacity must satisfy 1 <= min <= desired <= max; received"):
        node_group_template(desired=desired, minimum=minimum, maximum=maximum)


def test_asg_lives_in_the_private_subnets(template: Template) -> None:
    private = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}])}},
    )
    (asg,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup").values()
    assert sorted(ref["Ref"] for ref in asg["Properties"]["VPCZoneIdentifier"]) == sorted(private)


def test_asg_registers_with_the_load_balancer(template: Template) -> None:
    (elb_id,) = template.find_resources("AWS::ElasticLoadBalancing::LoadBalancer")
    template.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"LoadBalancerNames": [{"Ref": elb_id}]})


def test_asg_replaces_only_nodes_that_fail_ec2_status_checks(template: Template) -> None:
    """A broker outage fails every router's ELB check: the group must not replace every node for it."""
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"HealthCheckType": "EC2", "HealthCheckGracePeriod": 300}
    )


def test_termination_hook_holds_a_node_while_it_leaves(template: Template) -> None:
    (asg_id,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup")
    template.has_resource_properties(
        "AWS::AutoScaling::LifecycleHook",
        {
            "AutoScalingGroupName": {"Ref": asg_id},
            "LifecycleHookName": LIFECYCLE_HOOK_NAME,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "HeartbeatTimeout": 300,
            "DefaultResult": "CONTINUE",
        },
    )


def test_termination_hook_notifies_nobody(template: Template) -> None:
    """The node itself completes the hook; no queue or topic (and no role for one) is involved."""
    (hook,) = template.find_resources("AWS::AutoScaling::LifecycleHook").values()
    assert {"NotificationTargetARN", "RoleARN"}.isdisjoint(hook["Properties"])


def test_launch_template_change_rolls_one_node_at_a_time(template: Template) -> None:
    template.has_resource(
        "AWS::AutoScaling::AutoScalingGroup",
        {
            "UpdatePolicy": {
                "AutoScalingRollingUpdate": Match.object_like({"MaxBatchSize": 1, "MinInstancesInService": 2})
            }
        },
    )


def test_scaling_events_are_published_to_an_encrypted_topic(template: Template) -> None:
    topic_id = Capture()
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup",
        {"NotificationConfigurations": [Match.object_like({"TopicARN": {"Ref": topic_id}})]},
    )
    topic = template.find_resources("AWS::SNS::Topic")[topic_id.as_string()]
    assert "alias/aws/sns" in str(topic["Properties"]["KmsMasterKeyId"])


def test_notifications_topic_denies_plain_http(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_launch_template_boots_the_given_image_and_type(template: Template) -> None:
    data = launch_template_data(template)
    assert data["InstanceType"] == "t3.medium"
    assert data["UserData"] == {"Fn::Base64": "#cloud-config\n"}


def test_launch_template_requires_imdsv2_out_of_reach_of_bridged_containers(template: Template) -> None:
    """Hop limit 1: a token's response cannot cross the docker bridge, so containers get no credentials."""
    options = launch_template_data(template)["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 1)


def test_nodes_may_read_their_own_tags_from_instance_metadata(template: Template) -> None:
    """Nodes find their group's name (for discovery and the lifecycle hook) in their tags."""
    assert launch_template_data(template)["MetadataOptions"]["InstanceMetadataTags"] == "enabled"


def test_root_volume_is_encrypted_gp3_of_the_given_size(template: Template) -> None:
    assert launch_template_data(template)["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 50, "VolumeType": "gp3"},
        }
    ]


def test_nodes_get_no_public_address(template: Template) -> None:
    (interface,) = launch_template_data(template)["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False


def test_no_key_pair_by_default(template: Template) -> None:
    assert "KeyName" not in launch_template_data(template)


def test_key_pair_is_used_when_given() -> None:
    assert launch_template_data(node_group_template(key_pair_name="ops"))["KeyName"] == "ops"


def node_role_id(template: Template) -> str:
    (role_id,) = template.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": Match.object_like(
                    {"Statement": [Match.object_like({"Principal": {"Service": "ec2.amazonaws.com"}})]}
                )
            }
        },
    )
    return role_id


def node_statements(template: Template) -> list[dict]:
    role = {"Ref": node_role_id(template)}
    return [
        statement
        for policy in template.find_resources("AWS::IAM::ManagedPolicy").values()
        if role in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_instance_role_has_no_aws_managed_policy(template: Template) -> None:
    """AmazonSSMManagedInstanceCore gave ssm:GetParameter(s) on every parameter of the account."""
    (role,) = [r for key, r in template.find_resources("AWS::IAM::Role").items() if key == node_role_id(template)]
    assert "ManagedPolicyArns" not in role["Properties"]


def test_instance_role_has_only_session_managers_channel_actions(template: Template) -> None:
    template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "Roles": [{"Ref": node_role_id(template)}],
            "PolicyDocument": Match.object_like(
                {"Statement": [{"Action": list(SESSION_MANAGER_ACTIONS), "Effect": "Allow", "Resource": "*"}]}
            ),
        },
    )


def test_no_node_statement_reads_parameters_or_documents(template: Template) -> None:
    actions = {action for statement in node_statements(template) for action in statement["Action"]}
    assert not [action for action in actions if action.startswith(("ssm:Get", "ssm:Describe", "ec2messages:"))]


def test_nodes_complete_lifecycle_actions_only_of_their_own_group(template: Template) -> None:
    (asg_id,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup")
    (statement,) = [s for s in node_statements(template) if s["Action"] == "autoscaling:CompleteLifecycleAction"]
    assert statement["Condition"] == {
        "StringEquals": {
            "autoscaling:ResourceTag/aws:cloudformation:stack-id": {"Ref": "AWS::StackId"},
            "autoscaling:ResourceTag/aws:cloudformation:logical-id": asg_id,
        }
    }
    assert "autoScalingGroup:*:autoScalingGroupName/*" in str(statement["Resource"])


def test_node_policies_do_not_depend_on_the_group(template: Template) -> None:
    """The group's CreationPolicy waits for signals that need these policies: a reference back is a deadlock."""
    (asg_id,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup")
    for policy in template.find_resources("AWS::IAM::ManagedPolicy").values():
        assert asg_id not in policy.get("DependsOn", [])
        assert f"'Ref': '{asg_id}'" not in str(policy["Properties"])
        assert f"['{asg_id}'," not in str(policy["Properties"])


def test_router_port_is_open_only_from_the_load_balancer(template: Template) -> None:
    nodes = security_group_id(template, "Alchemy nodes")
    rules = template.find_resources(
        "AWS::EC2::SecurityGroupIngress",
        {"Properties": {"GroupId": {"Fn::GetAtt": [nodes, "GroupId"]}, "FromPort": 8080}},
    )
    (rule,) = rules.values()
    elb_group = security_group_id(template, "ConstructUnderTest/Elb/SecurityGroup")
    assert rule["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [elb_group, "GroupId"]}


def test_cluster_ports_are_open_only_between_nodes(template: Template) -> None:
    nodes = security_group_id(template, "Alchemy nodes")
    for port, _ in CLUSTER_PORTS:
        template.has_resource_properties(
            "AWS::EC2::SecurityGroupIngress",
            {
                "GroupId": {"Fn::GetAtt": [nodes, "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": [nodes, "GroupId"]},
                "FromPort": port,
                "ToPort": port,
                "IpProtocol": "tcp",
            },
        )


def test_nodes_admit_nothing_else(template: Template) -> None:
    nodes = security_group_id(template, "Alchemy nodes")
    (group,) = [g for key, g in template.find_resources("AWS::EC2::SecurityGroup").items() if key == nodes]
    assert "SecurityGroupIngress" not in group["Properties"]
    rules = template.find_resources(
        "AWS::EC2::SecurityGroupIngress", {"Properties": {"GroupId": {"Fn::GetAtt": [nodes, "GroupId"]}}}
    )
    assert sorted(rule["Properties"]["FromPort"] for rule in rules.values()) == sorted(
        [8080, *(port for port, _ in CLUSTER_PORTS)]
    )


def test_asg_waits_for_the_node_policies(template: Template) -> None:
    """A first boot reads secrets and signals: the group is created once the node's permissions exist."""
    (asg,) = template.find_resources("AWS::AutoScaling::AutoScalingGroup").values()
    policies = set(template.find_resources("AWS::IAM::ManagedPolicy"))
    assert len(policies) == 2
    assert policies <= set(asg["DependsOn"])
