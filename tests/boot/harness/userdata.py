"""The stack's real user data, with the values CloudFormation would fill in at deploy time.

The app is synthesized in-process (the default settings plus the harness's overrides); the node group's
launch template gives the user data as CloudFormation intrinsics. They are resolved here as CloudFormation
would: pseudo parameters to the harness's region, account and stack name, a secret's Ref to the ARN of a
secret created in the stand-in for AWS, a bucket's Ref to a bucket created there, and the functions
(Fn::Join, Fn::Sub, Fn::Select, Fn::GetAtt, Fn::Base64) to their values. Anything else is an error that
names it, so a new reference in the user data shows up here first. The deploy values parameter's value is
resolved the same way, for the harness to put into the stand-in's SSM under the name the user data gives.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from tests.boot.harness.cloud import ACCOUNT, REGION

STACK_NAME = "alchemy"


class UnresolvableError(Exception):
    """The user data references something the harness cannot stand in for."""


@dataclass(frozen=True)
class RenderedUserData:
    text: str
    """The cloud-config document as the instance receives it (``$private_ipv4`` still a placeholder)."""
    group_logical_id: str
    images: dict[str, str]
    """Image reference -> kind (etcd, aws-cli, rabbitmq, router, hello_world), for the docker shim."""
    bundle: bytes = b""
    """The node bundle (gzipped tar) as synthesized: what ``cdk deploy`` would publish to ``bundle_url``."""
    bundle_url: str = ""
    """``s3://bucket/key`` the user data names for the bundle (NODE_BUNDLE_URL), resolved."""
    deploy_values_parameter: str = ""
    """The SSM parameter the user data names for the deploy values (DEPLOY_VALUES_PARAMETER), resolved."""
    deploy_values: str = ""
    """The parameter's value as CloudFormation would set it: what the harness puts into SSM."""

    def bundle_files(self) -> dict[str, str]:
        """The node bundle's files by absolute path, as alchemy-files.service unpacks them."""
        if not self.bundle:
            return {}
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(self.bundle))) as archive:
            return {
                f"/{member.name.removeprefix('./').lstrip('/')}": archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                for member in archive.getmembers()
                if member.isfile()
            }


def resolver(template: dict[str, Any], refs: dict[str, str]) -> Callable[[Any], Any]:
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::StackName": STACK_NAME,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::Partition": "aws",
        "AWS::NoValue": "",
    }
    resources = template.get("Resources", {})

    def ref(name: str) -> str:
        if name in pseudo:
            return pseudo[name]
        if name in refs:
            return refs[name]
        kind = resources.get(name, {}).get("Type", "parameter or unknown")
        raise UnresolvableError(f"Ref {name} ({kind}) has no stand-in")

    def resolve(value: Any) -> Any:
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: resolve(v) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return ref(argument)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(resolve(item)) for item in resolve(items))
        if function == "Fn::Select":
            index, items = argument
            return resolve(items)[int(resolve(index))]
        if function == "Fn::Base64":
            return resolve(argument)
        if function == "Fn::GetAtt":
            name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            if attribute == "Arn" and resources.get(name, {}).get("Type") == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{ref(name)}"
            raise UnresolvableError(f"Fn::GetAtt {name}.{attribute} has no stand-in")
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            values = {k: resolve(v) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in values:
                    return str(values[name])
                if "." in name:
                    return str(resolve({"Fn::GetAtt": name.split(".", 1)}))
                return ref(name)

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        if function.startswith("Fn::"):
            raise UnresolvableError(f"{function} has no stand-in")
        return {function: resolve(argument)}

    return resolve


def launch_template_user_data(template: dict[str, Any]) -> tuple[Any, str]:
    """The launch template's user data (intrinsics) and the logical id of the group that uses it."""
    resources = template["Resources"]
    templates = [
        (name, r)
        for name, r in resources.items()
        if r["Type"] == "AWS::EC2::LaunchTemplate" and "UserData" in r["Properties"].get("LaunchTemplateData", {})
    ]
    groups = [name for name, r in resources.items() if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    if len(templates) != 1 or len(groups) != 1:
        raise UnresolvableError(f"expected one node launch template and one group, got {templates!r} and {groups!r}")
    return templates[0][1]["Properties"]["LaunchTemplateData"]["UserData"], groups[0]


def image_kinds(files: dict[str, str], deploy_values: str) -> dict[str, str]:
    """Which program each image of the node's units and scripts stands for, with the deploy values filled
    into the units' markers as alchemy-deploy-values fills them at boot."""
    from alchemy_constructs.node_bootstrap import AWS_CLI_IMAGE, ETCD_IMAGE, deploy_value_marker
    from alchemy_constructs.rabbitmq_config import RABBITMQ_IMAGE

    values = dict(line.split("=", 1) for line in deploy_values.splitlines() if "=" in line)
    kinds = {ETCD_IMAGE: "etcd", AWS_CLI_IMAGE: "aws-cli", RABBITMQ_IMAGE: "rabbitmq"}
    for path, text in files.items():
        name = path.rsplit("/", 1)[-1]
        for key, value in values.items():
            text = text.replace(deploy_value_marker(key), value)
        for service in ("router", "hello_world"):
            if name.startswith(f"{service}@"):
                for image in re.findall(r"^Environment=IMAGE=(\S+)$", text, flags=re.MULTILINE):
                    kinds[image] = service
    return kinds


def render(*, refs_for: Callable[[dict[str, Any]], dict[str, str]], **settings: Any) -> RenderedUserData:
    """Synthesizes the app with ``settings`` and resolves its user data; ``refs_for(template)`` creates the
    stand-ins (secrets, buckets) and returns logical id -> value."""
    from alchemy_constructs.node_bundle import NodeBundle
    from tests.synth import synthesize

    synthesis = synthesize(**settings)
    template = synthesis.template_json
    user_data, group = launch_template_user_data(template)
    refs = {**refs_for(template), group: f"{STACK_NAME}-{group}"}
    text = resolver(template, refs)(user_data)
    if not isinstance(text, str):
        raise UnresolvableError(f"the user data resolved to {type(text).__name__}, not text")
    bundles = [c for c in synthesis.stack.node.find_all() if isinstance(c, NodeBundle)]
    if len(bundles) != 1:
        raise UnresolvableError(f"expected one node bundle in the stack, got {len(bundles)}")
    environment = node_environment(text)
    if "NODE_BUNDLE_URL" not in environment or "DEPLOY_VALUES_PARAMETER" not in environment:
        raise UnresolvableError("the user data's environment has no NODE_BUNDLE_URL or DEPLOY_VALUES_PARAMETER")
    deploy_values = resolver(template, refs)(deploy_values_value(template))
    rendered = RenderedUserData(
        text=text,
        group_logical_id=group,
        images={},
        bundle=bundles[0].archive_path.read_bytes(),
        bundle_url=environment["NODE_BUNDLE_URL"],
        deploy_values_parameter=environment["DEPLOY_VALUES_PARAMETER"],
        deploy_values=deploy_values,
    )
    return dataclasses.replace(rendered, images=image_kinds(rendered.bundle_files(), deploy_values))


def deploy_values_value(template: dict[str, Any]) -> Any:
    """The deploy values parameter's value (intrinsics): the stack's one SSM parameter."""
    values = [r for r in template["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"]
    if len(values) != 1:
        raise UnresolvableError(f"expected one SSM parameter (the deploy values), got {len(values)}")
    return values[0]["Properties"]["Value"]


def node_environment(text: str) -> dict[str, str]:
    """The variables of the environment file the user data writes (NODE_ENVIRONMENT)."""
    from alchemy_constructs.node_bootstrap import NODE_ENVIRONMENT

    document = yaml.safe_load(text)
    for entry in document.get("write_files", []):
        if entry.get("path") == NODE_ENVIRONMENT:
            return dict(line.split("=", 1) for line in entry["content"].splitlines() if "=" in line)
    raise UnresolvableError(f"the user data writes no {NODE_ENVIRONMENT}")
