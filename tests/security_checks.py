"""Walkers that read a synthesized template the way a security reviewer would.

Each returns a list of problems (empty when the template is clean), so a test can show both
that the stack passes and that a deliberately broken template does not.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MANAGED_POLICIES: dict[str, Any] = json.loads((Path(__file__).with_name("aws_managed_policies.json")).read_text())[
    "policies"
]
"""AWS managed policies the stack can attach, with their documented statements."""

REVIEWED_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "CDK's default-security-group handler writes its own logs; AWS scopes the "
    "policy to Resource *, and the handler's role holds nothing else of note",
}
"""AWS managed policies whose Resource "*" statements were reviewed as a whole (their actions are still
checked against the allow-list)."""

ALLOWED_ACTIONS: dict[str, str] = {
    "autoscaling:DescribeAutoScalingGroups": "etcd membership lists the group's size and instances",
    "autoscaling:DescribeAutoScalingInstances": "peer discovery and etcd-leave read the node's group and state",
    "ec2:DescribeInstances": "etcd membership and RabbitMQ peer discovery map instances to private IPs",
    "secretsmanager:GetSecretValue": "nodes read the broker's Erlang cookie and admin password at boot",
    "secretsmanager:DescribeSecret": "granted with GetSecretValue; reveals no value",  # pragma: allowlist secret
    "cloudformation:SignalResource": "nodes report ready so creation and rolling updates can proceed",
    "autoscaling:CompleteLifecycleAction": "a terminating node releases its group's hook once it has left",
    "ssm:GetParameter": "nodes read the stack's one deploy values parameter (ARNs and names, no secret) at boot",
    "ssm:UpdateInstanceInformation": "the SSM agent registers the node for Session Manager",
    "ssmmessages:CreateControlChannel": "Session Manager's channels to the SSM agent",
    "ssmmessages:CreateDataChannel": "Session Manager's channels to the SSM agent",
    "ssmmessages:OpenControlChannel": "Session Manager's channels to the SSM agent",
    "ssmmessages:OpenDataChannel": "Session Manager's channels to the SSM agent",
    "ecr:BatchCheckLayerAvailability": "nodes pull the service images built from the project",
    "ecr:BatchGetImage": "nodes pull the service images built from the project",
    "ecr:GetDownloadUrlForLayer": "nodes pull the service images built from the project",
    "ecr:GetAuthorizationToken": "nodes log in to ECR with their role (no stored credential)",
    "logs:CreateLogGroup": "CDK's default-security-group handler creates its log group (AWSLambdaBasicExecutionRole)",
    "s3:PutObject": "nodes upload etcd snapshots (write-once); ELB log delivery writes access logs",
    "s3:GetObject": "the restore role (an operator, never a node) reads etcd snapshots",
    "s3:ListBucket": "the restore role lists the snapshot prefix to pick a snapshot",
    "logs:CreateLogStream": "VPC flow logs write to their log group",
    "logs:DescribeLogStreams": "VPC flow logs find their stream",
    "logs:PutLogEvents": "VPC flow logs write to their log group",
    "kms:Decrypt": "reading secrets; completing multipart snapshot uploads; the restore role reading snapshots",
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
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ecr:GetAuthorizationToken",
}
"""Calls that an instance role cannot scope to resources named in advance (describe calls, the SSM
agent's registration and channels): the only ones allowed on Resource "*"."""

_AWS_MANAGED_POLICY = re.compile(r":iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)")


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


def aws_managed_policies(template: dict[str, Any]) -> list[tuple[str, str]]:
    """(logical id, policy name) for every AWS managed policy a role, user or group of the template attaches."""
    attached = []
    for logical_id, resource in template["Resources"].items():
        for arn in _as_list(resource.get("Properties", {}).get("ManagedPolicyArns", [])):
            # ARNs are literals, Fn::Join or Fn::Sub: their text names the policy either way.
            match = _AWS_MANAGED_POLICY.search(json.dumps(arn).replace('", "', "").replace('"', ""))
            if match:
                attached.append((logical_id, match[1]))
    return attached


def _statement_problems(
    where: str, statements: Iterable[dict[str, Any]], *, any_resource_reviewed: bool = False
) -> list[str]:
    problems = []
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        actions = _as_list(statement.get("Action", []))
        for action in actions:
            if action not in ALLOWED_ACTIONS:
                problems.append(f"{where}: action {action} is not in the allow-list")
        if "*" in _as_list(statement.get("Resource", [])) and not any_resource_reviewed:
            for action in actions:
                if action not in UNSCOPED_ACTIONS:
                    problems.append(f"{where}: {action} on Resource *")
    return problems


def iam_problems(template: dict[str, Any]) -> list[str]:
    """Actions outside the allow-list, and "*" resources outside the unscoped calls, in the stack's own
    policies and in the documented statements of every AWS managed policy it attaches."""
    problems = []
    for logical_id, document in policy_documents(template):
        problems += _statement_problems(logical_id, document["Statement"])
    for logical_id, name in aws_managed_policies(template):
        if name not in MANAGED_POLICIES:
            problems.append(f"{logical_id}: AWS managed policy {name} is not in the managed policy table")
            continue
        problems += _statement_problems(
            f"{logical_id} ({name})",
            MANAGED_POLICIES[name]["statements"],
            any_resource_reviewed=name in REVIEWED_MANAGED_POLICIES,
        )
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


NON_PUBLIC_IPV4 = tuple(
    ipaddress.IPv4Network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
)
"""IPv4 ranges that are not internet addresses (RFC 6890: private, shared, loopback, link-local,
documentation, benchmarking, multicast and reserved)."""

GLOBAL_IPV6 = ipaddress.IPv6Network("2000::/3")
"""The IPv6 global unicast space: every internet address IANA hands out."""


def _remaining(
    space: list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network],
    cut: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> list[Any]:
    left: list[Any] = []
    for network in space:
        if network.version != cut.version or not network.overlaps(cut):
            left.append(network)
        elif not network.subnet_of(cut):  # type: ignore[arg-type]
            left += network.address_exclude(cut)  # type: ignore[arg-type]
    return left


def covers_the_internet(cidrs: Iterable[str]) -> bool:
    """Whether these CIDRs together admit every internet address (IPv4 or IPv6), whatever their split:
    0.0.0.0/1 with 128.0.0.0/1 is as open as 0.0.0.0/0, and so is every public range without the
    private ones."""
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]
    ipv4: list[Any] = [ipaddress.IPv4Network("0.0.0.0/0")]
    for cut4 in (*NON_PUBLIC_IPV4, *(n for n in networks if n.version == 4)):
        ipv4 = _remaining(ipv4, cut4)
    ipv6: list[Any] = [GLOBAL_IPV6]
    for cut6 in (n for n in networks if n.version == 6):
        ipv6 = _remaining(ipv6, cut6)
    return not ipv4 or not ipv6


def _cidr(rule: dict[str, Any]) -> str | None:
    value = rule.get("CidrIp") or rule.get("CidrIpv6")
    return value if isinstance(value, str) else None


def _same_traffic(rule: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether ``other`` admits the traffic of ``rule``'s first port (any protocol for -1)."""
    if str(other.get("IpProtocol")) == "-1":
        return True
    if str(rule.get("IpProtocol")) == "-1":
        return False
    return str(rule.get("IpProtocol")) == str(other.get("IpProtocol")) and _covers(other, int(rule.get("FromPort", -1)))


def _covers(rule: dict[str, Any], port: int) -> bool:
    if str(rule.get("IpProtocol")) == "-1":
        return True
    return int(rule.get("FromPort", -1)) <= port <= int(rule.get("ToPort", -1))


def exposure_problems(
    template: dict[str, Any], *, listener_ports: set[int], node_ports: set[int], ssh_allowed: bool = False
) -> list[str]:
    """The internet (0.0.0.0/0, ::/0, or CIDRs that cover it together) only on the ELB's listener ports;
    no SSH; node ports only from nodes or the ELB."""
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
    rules = _ingress_rules(template)
    for group, rule in rules:
        # Open when this rule's CIDR, with every other CIDR of the group that admits the same traffic,
        # covers the internet.
        together = [_cidr(other) for other_group, other in rules if other_group == group and _same_traffic(rule, other)]
        anywhere = _cidr(rule) is not None and covers_the_internet(c for c in together if c is not None)
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
