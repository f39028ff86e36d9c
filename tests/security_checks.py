"""Walkers that read a synthesized template the way a security reviewer would.

Each returns a list of problems (empty when the template is clean), so a test can show both
that the stack passes and that a deliberately broken template does not.
"""

from __future__ import annotations

from typing import Any

ALLOWED_ACTIONS: dict[str, str] = {
    "autoscaling:DescribeAutoScalingGroups": "etcd membership lists the group's size and instances",
    "autoscaling:DescribeAutoScalingInstances": "peer discovery and etcd-leave read the node's group and state",
    "ec2:DescribeInstances": "etcd membership and RabbitMQ peer discovery map instances to private IPs",
    "secretsmanager:GetSecretValue": "nodes read the broker's Erlang cookie and admin password at boot",
    "secretsmanager:DescribeSecret": "granted with GetSecretValue; reveals no value",  # pragma: allowlist secret
    "cloudformation:SignalResource": "nodes report ready so creation and rolling updates can proceed",
    "s3:PutObject": "nodes upload etcd snapshots; ELB log delivery writes access logs",
    "logs:CreateLogStream": "VPC flow logs write to their log group",
    "logs:DescribeLogStreams": "VPC flow logs find their stream",
    "logs:PutLogEvents": "VPC flow logs write to their log group",
    "kms:Decrypt": "reading what a customer managed key encrypted (secrets, snapshots)",
    "kms:Encrypt": "writing what a customer managed key encrypts",
    "kms:GenerateDataKey": "nodes write etcd snapshots to the KMS-encrypted bucket",
    "kms:GenerateDataKey*": "envelope encryption with a customer managed key",
    "kms:ReEncrypt*": "granted with the key by CDK for encrypted writes",
    "kms:DescribeKey": "clients check the key before use",
    "ec2:AuthorizeSecurityGroupIngress": "CDK's handler that empties the VPC's default security group",
    "ec2:AuthorizeSecurityGroupEgress": "CDK's handler that empties the VPC's default security group",
    "ec2:RevokeSecurityGroupIngress": "CDK's handler that empties the VPC's default security group (its only target)",
    "ec2:RevokeSecurityGroupEgress": "CDK's handler that empties the VPC's default security group (its only target)",
}
"""Every IAM action the stack may grant, with why. Anything else fails the review test."""

UNSCOPED_ACTIONS = {
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "ec2:DescribeInstances",
}
"""Describe calls that AWS does not scope to resources: the only ones allowed on Resource "*"."""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_documents(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every policy document of the template: policies, managed policies and roles' inline ones."""
    documents = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append((logical_id, resource["Properties"]["PolicyDocument"]))
        elif resource["Type"] == "AWS::IAM::Role":
            documents += [
                (logical_id, inline["PolicyDocument"]) for inline in resource["Properties"].get("Policies", [])
            ]
    return documents


def iam_problems(template: dict[str, Any]) -> list[str]:
    """Actions outside the allow-list, and "*" resources outside the unscoped describe calls."""
    problems = []
    for logical_id, document in policy_documents(template):
        for statement in document["Statement"]:
            if statement.get("Effect") != "Allow":
                continue
            actions = _as_list(statement.get("Action", []))
            for action in actions:
                if action not in ALLOWED_ACTIONS:
                    problems.append(f"{logical_id}: action {action} is not in the allow-list")
            if "*" in _as_list(statement.get("Resource", [])):
                for action in actions:
                    if action not in UNSCOPED_ACTIONS:
                        problems.append(f"{logical_id}: {action} on Resource *")
    return problems


def _ingress_rules(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rules = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            rules += [(logical_id, rule) for rule in resource["Properties"].get("SecurityGroupIngress", [])]
        elif resource["Type"] == "AWS::EC2::SecurityGroupIngress":
            rule = dict(resource["Properties"])
            group = rule.pop("GroupId")
            rules.append((group["Fn::GetAtt"][0], rule))
    return rules


def _covers(rule: dict[str, Any], port: int) -> bool:
    if str(rule.get("IpProtocol")) == "-1":
        return True
    return int(rule.get("FromPort", -1)) <= port <= int(rule.get("ToPort", -1))


def exposure_problems(
    template: dict[str, Any], *, listener_ports: set[int], node_ports: set[int], ssh_allowed: bool = False
) -> list[str]:
    """0.0.0.0/0 or ::/0 only on the ELB's listener ports; no SSH; node ports only from nodes or the ELB."""
    groups = {
        key: resource["Properties"].get("GroupDescription", "")
        for key, resource in template["Resources"].items()
        if resource["Type"] == "AWS::EC2::SecurityGroup"
    }
    load_balancers = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::ElasticLoadBalancing::LoadBalancer"
    ]
    elb_groups = {
        group["Fn::GetAtt"][0] for elb in load_balancers for group in elb["Properties"].get("SecurityGroups", [])
    }
    node_groups = {key for key, description in groups.items() if description.startswith("Alchemy nodes")}
    problems = []
    for group, rule in _ingress_rules(template):
        anywhere = rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0"
        ports = f"{rule.get('IpProtocol')}:{rule.get('FromPort', '*')}-{rule.get('ToPort', '*')}"
        if anywhere and (group not in elb_groups or not any(_covers(rule, p) for p in listener_ports)):
            problems.append(f"{group}: {ports} open to the internet")
        if anywhere and str(rule.get("IpProtocol")) == "-1":
            problems.append(f"{group}: all traffic open to the internet")
        if _covers(rule, 22) and not ssh_allowed:
            problems.append(f"{group}: port 22 open")
        if group in node_groups and any(_covers(rule, p) for p in node_ports):
            source = rule.get("SourceSecurityGroupId", {}).get("Fn::GetAtt", [None])[0]
            if source not in node_groups | elb_groups:
                problems.append(f"{group}: {ports} open to {rule.get('CidrIp') or source}, not only nodes or the ELB")
    return problems
