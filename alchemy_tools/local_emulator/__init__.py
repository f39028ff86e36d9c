"""Everything that differs when the target is the local AWS emulator (moto), in one place.

The local deploy loop runs the real CDK CLI against moto on 127.0.0.1. moto has gaps, and
this module is the only place that works around them, so a reviewer finds every
emulator-only switch here and nowhere else:

- The emulator has its own CDK app, :mod:`alchemy_tools.local_emulator.app` (the product's
  ``app.py`` knows nothing of it). It builds the same stack and changes the template only when
  ``ALCHEMY_LOCAL_EMULATOR`` is set *and* the AWS endpoint is on this machine; otherwise it
  refuses to synthesize. The changes are in :mod:`alchemy_tools.local_emulator.template`, each
  with the gap it works around.
- The CLI is told how to talk to the emulator (:func:`cli_environment`, :data:`DEPLOY_ARGS`,
  :data:`DIFF_ARGS`, :func:`explicit_parameter_defaults`), and what moto's stack
  deletion cannot delete is deleted around it (:func:`before_destroy`,
  :func:`after_destroy`).

Every real synth, diff and deploy runs ``app.py``, where none of this exists. This module imports
no CDK code, so the emulator's command line starts fast; the app and template parts do.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

MOTO_CREDENTIAL = "testing"
"""moto accepts any credentials; these keep the CLI from looking for real ones."""

SWITCH = "ALCHEMY_LOCAL_EMULATOR"
"""Environment variable that turns the emulator adaptations on (``1`` or ``true``)."""

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"

S3_ENDPOINT_FOR_CLOUDFORMATION = "https://s3.us-east-1.amazonaws.com"
"""moto's CloudFormation only parses bucket and key out of a template URL of AWS's form.

The CLI builds the URL it hands to CloudFormation from this endpoint (and uploads through
``AWS_ENDPOINT_URL``); with the loopback URL moto cannot find the template. Only the URL's
text changes: every request still goes to the emulator.
"""

DEPLOY_ARGS = ("--method=direct",)
"""moto's change sets break on update, so deploys call CreateStack/UpdateStack directly."""

DIFF_ARGS = ("--method=template",)
"""A diff compares templates instead of creating a change set, for the same reason."""

APP_MODULE = "alchemy_tools.local_emulator.app"
"""The emulator's own CDK app (``python -m``): the product's stack, adapted for moto."""


def cli_app_command(python: str = sys.executable) -> str:
    """The ``cdk --app`` command that synthesizes the emulator's app with ``python`` (from the project root)."""
    return f"{shlex.quote(python)} -m {APP_MODULE}"


DEFAULT_REGION = "us-east-1"
ACCOUNT = "123456789012"
"""moto's default account id."""

NAT_ROOT_VOLUME_GB = 8
"""Size of the Amazon Linux 2023 root snapshot: what AWS uses when a mapping names no size."""

PLACEHOLDER_IMAGES = {
    "router_image": "localhost/alchemy/router:local-emulator",
    "hello_world_image": "localhost/alchemy/hello_world:local-emulator",
}
"""Pinned stand-ins for the service images on the emulator: the loop runs without a Docker engine
and moto never boots a node, so nothing is built or pulled; a stand-in names no real registry."""


def placeholder_images(images: Mapping[str, str | None]) -> dict[str, str]:
    """The stand-in reference of each image setting that is unset (= would be built as an asset)."""
    return {name: PLACEHOLDER_IMAGES[name] for name, image in images.items() if image is None}


class EmulatorTargetError(ValueError):
    """The switch has a bad value, or is on while the AWS endpoint is not the local emulator."""

    def __init__(self, value: str, allowed: str) -> None:
        super().__init__(f"invalid {SWITCH}={value!r}: {allowed}")


def is_loopback_endpoint(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlparse(url).hostname
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether this synth targets the local emulator.

    Raises :class:`EmulatorTargetError` when the switch is on but ``AWS_ENDPOINT_URL`` is
    unset or not on this machine: a template adapted for moto must never reach AWS.
    """
    value = environ.get(SWITCH, "").strip().lower()
    if value in ("", "0", "false"):
        return False
    if value not in ("1", "true"):
        raise EmulatorTargetError(environ[SWITCH], "must be 1, true, 0 or false")
    endpoint = environ.get(ENDPOINT_VARIABLE, "")
    if not is_loopback_endpoint(endpoint):
        raise EmulatorTargetError(
            environ[SWITCH],
            f"only allowed while {ENDPOINT_VARIABLE} points at the local emulator on this machine "
            f"(received {ENDPOINT_VARIABLE}={endpoint!r})",
        )
    return True


def explicit_parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Every template parameter that has a default, with that default, for ``cdk deploy --parameters``.

    On an update the CLI asks CloudFormation to keep the previous value of such parameters
    (``UsePreviousValue``), and moto's ``UpdateStack`` fails with a ``KeyError`` on them (the
    SSM-backed ``BootstrapVersion`` and NAT image parameters). Passing the default spells out
    the value AWS would use anyway.
    """
    parameters: Mapping[str, Mapping[str, Any]] = template.get("Parameters", {})
    return {name: str(spec["Default"]) for name, spec in parameters.items() if "Default" in spec}


UNDELETED_TYPES = (
    "AWS::EC2::RouteTable",
    "AWS::EC2::EIP",
    "AWS::EC2::InternetGateway",
    "AWS::EC2::FlowLog",
    "AWS::IAM::ManagedPolicy",
)
"""Resource types moto's CloudFormation has no delete handler for: stack deletion leaves them.

(Routes and subnet associations have none either, but they vanish with their route table.)
"""

NOT_MODELLED_TYPES = ("AWS::SecretsManager::Secret",)
"""Resource types moto's CloudFormation reports as created but never creates.

The stack lists them with a physical id; the service's own API does not know them, so on the
emulator "nothing of them remains after destroy" holds trivially and proves nothing.
"""


def before_destroy(ec2: Any, iam: Any, stack_resources: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Deletes the stack's route tables and detaches its roles' managed policies before ``cdk destroy``.

    Left in place, the route tables make the VPC's deletion fail with "has dependencies", and
    moto then forgets the half-deleted stack (and everything still in it). moto's role
    deletion does not detach managed policies as CloudFormation does, and fails with "must
    detach all policies first". Returns ``{type: [ids]}`` of what was done by hand.
    """
    wanted = set(stack_resources.get("AWS::EC2::RouteTable", ()))
    deleted = []
    for table in ec2.describe_route_tables()["RouteTables"]:
        if table["RouteTableId"] in wanted:
            ec2.delete_route_table(RouteTableId=table["RouteTableId"])
            deleted.append(str(table["RouteTableId"]))
    detached = []
    for role in stack_resources.get("AWS::IAM::Role", ()):
        for policy in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=policy["PolicyArn"])
            detached.append(f"{role}:{policy['PolicyArn']}")
    return {"AWS::EC2::RouteTable": deleted, "AWS::IAM::Role": detached}


def after_destroy(ec2: Any, iam: Any, stack_resources: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Deletes the stack's Elastic IPs, internet gateways, flow logs and managed policies that moto
    left; returns ``{type: [ids]}``."""
    public_ips = set(stack_resources.get("AWS::EC2::EIP", ()))
    released = []
    for address in ec2.describe_addresses()["Addresses"]:
        if address["PublicIp"] in public_ips:
            if "AssociationId" in address:
                ec2.disassociate_address(AssociationId=address["AssociationId"])
            ec2.release_address(AllocationId=address["AllocationId"])
            released.append(str(address["PublicIp"]))
    gateway_ids = set(stack_resources.get("AWS::EC2::InternetGateway", ()))
    deleted = []
    for gateway in ec2.describe_internet_gateways()["InternetGateways"]:
        if gateway["InternetGatewayId"] in gateway_ids:
            for attachment in gateway.get("Attachments", []):
                ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=attachment["VpcId"])
            ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
            deleted.append(str(gateway["InternetGatewayId"]))
    flow_log_ids = set(stack_resources.get("AWS::EC2::FlowLog", ()))
    flow_logs = [
        str(log["FlowLogId"]) for log in ec2.describe_flow_logs()["FlowLogs"] if log["FlowLogId"] in flow_log_ids
    ]
    if flow_logs:
        ec2.delete_flow_logs(FlowLogIds=flow_logs)
    return {
        "AWS::EC2::EIP": released,
        "AWS::EC2::InternetGateway": deleted,
        "AWS::EC2::FlowLog": flow_logs,
        "AWS::IAM::ManagedPolicy": _delete_managed_policies(iam, stack_resources.get("AWS::IAM::ManagedPolicy", ())),
    }


def _delete_managed_policies(iam: Any, policy_arns: Sequence[str]) -> list[str]:
    """Deletes the stack's customer managed policies, as CloudFormation does: detached, old versions first."""
    existing = {
        str(policy["Arn"])
        for page in iam.get_paginator("list_policies").paginate(Scope="Local")
        for policy in page["Policies"]
    }
    deleted = []
    for arn in policy_arns:
        if arn not in existing:
            continue
        entities = iam.list_entities_for_policy(PolicyArn=arn)
        for role in entities["PolicyRoles"]:
            iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
        for user in entities["PolicyUsers"]:
            iam.detach_user_policy(UserName=user["UserName"], PolicyArn=arn)
        for group in entities["PolicyGroups"]:
            iam.detach_group_policy(GroupName=group["GroupName"], PolicyArn=arn)
        for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
        iam.delete_policy(PolicyArn=arn)
        deleted.append(arn)
    return deleted


def cli_environment(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Variables that point the CDK CLI (and boto3) at the emulator and nowhere else.

    Requests that would leave through any other endpoint go to a closed local proxy port
    and fail, so a forgotten override cannot reach the internet.
    """
    if not is_loopback_endpoint(endpoint):
        raise ValueError(f"the emulator endpoint must be on this machine; received {endpoint!r}")
    closed_proxy = "http://127.0.0.1:9"
    return {
        SWITCH: "1",
        ENDPOINT_VARIABLE: endpoint,
        "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION": S3_ENDPOINT_FOR_CLOUDFORMATION,
        "AWS_ACCESS_KEY_ID": MOTO_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIAL,
        "AWS_SESSION_TOKEN": MOTO_CREDENTIAL,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "HTTPS_PROXY": closed_proxy,
        "HTTP_PROXY": closed_proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CI": "true",
    }
