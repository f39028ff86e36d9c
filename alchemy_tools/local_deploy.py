"""The real CDK CLI against the local emulator: bootstrap, deploy, diff, destroy.

Each command synthesizes once into its own cloud assembly and hands that assembly to the
CLI (``--app DIR``), as a release pipeline does. ``python -m alchemy_tools.local_deploy up``
is the one-command local cycle behind ``make local-deploy``; ``diff`` and ``down`` follow it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from alchemy_tools import cdk_diff_comment, local_aws, local_emulator

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
STACK_ID = "AlchemyStack"
TEMPLATE = f"{STACK_ID}.template.json"
CLI_TIMEOUT_S = 300
NODE_IMAGE_NAME = "Flatcar-stable-0000.0.0-hvm"
"""Name of the stand-in node image registered in the emulator, which ships no Flatcar images."""


@dataclass(frozen=True)
class CdkResult:
    """One CLI run: what it was asked, what it said (stdout and stderr together), how long it took."""

    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float


@dataclass(frozen=True)
class Destroyed:
    """The outcome of ``cdk destroy`` on the emulator."""

    result: CdkResult
    worked_around: dict[str, tuple[str, ...]]
    """Resource type -> ids deleted by hand because moto's stack deletion cannot (see local_emulator)."""
    remaining: dict[str, tuple[str, ...]]
    """Resource type -> ids of the stack's resources still there after destroy (retained ones excluded)."""
    retained: dict[str, tuple[str, ...]]
    """Resource type -> ids kept on purpose (``DeletionPolicy: Retain``) that are still there."""
    unchecked: tuple[str, ...]
    """Resource types of the stack that :func:`existing_ids` cannot look up (parts of another resource)."""
    not_modelled: tuple[str, ...]
    """Resource types of the stack that moto never creates (:data:`local_emulator.NOT_MODELLED_TYPES`)."""

    @property
    def clean(self) -> bool:
        return not any(self.remaining.values())


@dataclass
class LocalCdk:
    """The project's pinned CDK CLI, pointed at one emulator."""

    server: local_aws.LocalAws
    workdir: Path
    timings: list[tuple[str, float]] = field(default_factory=list)
    _assemblies: int = 0

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` on the emulator."""
        environment = local_emulator.cli_environment(self.server.endpoint)
        return boto3.client(
            service,
            endpoint_url=self.server.endpoint,
            region_name=environment["AWS_REGION"],
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=environment["AWS_SESSION_TOKEN"],
        )

    def run(self, *args: str, check: bool = True) -> CdkResult:
        started = time.monotonic()
        completed = subprocess.run(
            [str(CDK), *args],
            cwd=ROOT,
            env=self.server.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        result = CdkResult(tuple(args), completed.returncode, completed.stdout, time.monotonic() - started)
        self.timings.append((_describe(args), result.seconds))
        if check and result.returncode != 0:
            raise RuntimeError(f"cdk {shlex.join(args)} failed with status {result.returncode}:\n{result.output}")
        return result

    def bootstrap(self) -> CdkResult:
        environment = f"aws://{local_emulator.ACCOUNT}/{local_emulator.DEFAULT_REGION}"
        return self.run("bootstrap", environment, "--output", str(self._new_assembly_dir()))

    def synth(self, settings: Mapping[str, object]) -> Path:
        """Synthesizes the emulator's app with these settings (``-c key=value``) into a new assembly."""
        assembly = self._new_assembly_dir()
        self.run(
            "synth",
            "--app",
            local_emulator.cli_app_command(),
            "--quiet",
            "--output",
            str(assembly),
            *context_args(settings),
        )
        return assembly

    def deploy(self, settings: Mapping[str, object], node_image_id: str) -> tuple[Path, CdkResult]:
        assembly = self.synth(settings)
        template = json.loads((assembly / TEMPLATE).read_text())
        parameters = {**local_emulator.explicit_parameter_defaults(template), "NodeImageId": node_image_id}
        result = self.run(
            "deploy",
            "--app",
            str(assembly),
            "--require-approval",
            "never",
            *local_emulator.DEPLOY_ARGS,
            *(argument for name, value in parameters.items() for argument in ("--parameters", f"{name}={value}")),
        )
        return assembly, result

    def diff(self, settings: Mapping[str, object], *, fail: bool = False) -> CdkResult:
        return self.diff_assembly(self.synth(settings), fail=fail)

    def diff_assembly(self, assembly: Path, *, fail: bool = False) -> CdkResult:
        """``cdk diff`` of a cloud assembly against the deployed stack (status 1 on a difference with ``fail``)."""
        flags = ("--fail",) if fail else ()
        return self.run("diff", "--app", str(assembly), "--no-color", *local_emulator.DIFF_ARGS, *flags, check=not fail)

    def destroy(self, settings: Mapping[str, object]) -> Destroyed:
        """``cdk destroy``, with what moto's stack deletion cannot delete deleted around it, then a
        look through the service APIs for anything of the stack that is still there."""
        assembly = self.synth(settings)
        ec2, iam = self.client("ec2"), self.client("iam")
        stack_name = stack_name_of(assembly)
        template = self.deployed_template(stack_name)
        declared_types = {str(r["Type"]) for r in template.get("Resources", {}).values()}
        resources = self.stack_resources(stack_name, template)
        retain = self.retained_ids(stack_name, template)
        worked_around = local_emulator.before_destroy(ec2, iam, resources)
        result = self.run("destroy", "--force", "--app", str(assembly))
        worked_around.update(local_emulator.after_destroy(ec2, iam, resources))
        remaining: dict[str, tuple[str, ...]] = {}
        retained: dict[str, tuple[str, ...]] = {}
        unchecked = []
        for kind, ids in sorted(resources.items()):
            lookup = existing_ids(self, kind)
            if lookup is None:
                unchecked.append(kind)
                continue
            still = lookup & set(ids)
            remaining[kind] = tuple(sorted(still - retain))
            retained[kind] = tuple(sorted(still & retain))
        return Destroyed(
            result,
            {kind: tuple(ids) for kind, ids in worked_around.items()},
            {kind: ids for kind, ids in remaining.items() if ids},
            {kind: ids for kind, ids in retained.items() if ids},
            tuple(unchecked),
            # From the template: moto lists such resources with neither a logical id nor a type.
            tuple(kind for kind in local_emulator.NOT_MODELLED_TYPES if kind in declared_types),
        )

    def deployed_template(self, stack_name: str) -> dict[str, Any]:
        body = self.client("cloudformation").get_template(StackName=stack_name)["TemplateBody"]
        template: dict[str, Any] = json.loads(body) if isinstance(body, str) else body
        return template

    def retained_ids(self, stack_name: str, template: Mapping[str, Any]) -> set[str]:
        """Physical ids of the deployed stack's resources with ``DeletionPolicy: Retain``."""
        cloudformation = self.client("cloudformation")
        retained = {name for name, r in template.get("Resources", {}).items() if r.get("DeletionPolicy") == "Retain"}
        return {
            str(summary["PhysicalResourceId"])
            for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
            for summary in page["StackResourceSummaries"]
            if summary["LogicalResourceId"] in retained
        }

    def stack_exists(self, stack_name: str) -> bool:
        live = self.client("cloudformation").list_stacks()["StackSummaries"]
        return any(s["StackName"] == stack_name and s["StackStatus"] != "DELETE_COMPLETE" for s in live)

    def stack_resources(self, stack_name: str, template: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
        """Physical ids of the stack's resources, by type.

        moto reports no type for some resources; the template's type is used then, when moto reports
        the logical id (it reports neither for the resources it does not model, such as secrets).
        """
        declared = {name: str(r["Type"]) for name, r in (template or {}).get("Resources", {}).items()}
        paginator = self.client("cloudformation").get_paginator("list_stack_resources")
        resources: dict[str, list[str]] = {}
        for page in paginator.paginate(StackName=stack_name):
            for summary in page["StackResourceSummaries"]:
                kind = summary.get("ResourceType") or declared.get(summary["LogicalResourceId"], "(type not reported)")
                resources.setdefault(kind, []).append(str(summary["PhysicalResourceId"]))
        return resources

    def register_node_image(self) -> str:
        """Registers the stand-in node image and returns its id."""
        ec2 = self.client("ec2")
        found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [NODE_IMAGE_NAME]}])["Images"]
        if found:
            return str(found[0]["ImageId"])
        registered = ec2.register_image(
            Name=NODE_IMAGE_NAME,
            Architecture="x86_64",
            RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
        )
        return str(registered["ImageId"])

    def _new_assembly_dir(self) -> Path:
        self._assemblies += 1
        return self.workdir / f"assembly-{self._assemblies}"


def existing_ids(cdk: LocalCdk, resource_type: str) -> set[str] | None:
    """Physical ids of every resource of ``resource_type`` the emulator holds, in the form
    CloudFormation reports them; None for a type this check cannot look up."""
    ec2 = cdk.client("ec2")
    iam = cdk.client("iam")
    lookups: dict[str, Any] = {
        "AWS::EC2::VPC": lambda: {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]},
        "AWS::EC2::Subnet": lambda: {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        "AWS::EC2::RouteTable": lambda: {t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]},
        "AWS::EC2::SecurityGroup": lambda: {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        "AWS::EC2::InternetGateway": lambda: {
            g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]
        },
        "AWS::EC2::EIP": lambda: {a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]},
        "AWS::EC2::Instance": lambda: {
            i["InstanceId"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        },
        "AWS::EC2::LaunchTemplate": lambda: {
            t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
        },
        "AWS::EC2::FlowLog": lambda: {f["FlowLogId"] for f in ec2.describe_flow_logs()["FlowLogs"]},
        "AWS::AutoScaling::AutoScalingGroup": lambda: {
            g["AutoScalingGroupName"]
            for g in cdk.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        },
        "AWS::ElasticLoadBalancing::LoadBalancer": lambda: {
            b["LoadBalancerName"] for b in cdk.client("elb").describe_load_balancers()["LoadBalancerDescriptions"]
        },
        "AWS::IAM::Role": lambda: {r["RoleName"] for r in iam.list_roles()["Roles"]},
        "AWS::IAM::InstanceProfile": lambda: {
            p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
        },
        "AWS::IAM::ManagedPolicy": lambda: {
            p["Arn"] for page in iam.get_paginator("list_policies").paginate(Scope="Local") for p in page["Policies"]
        },
        "AWS::SNS::Topic": lambda: {t["TopicArn"] for t in cdk.client("sns").list_topics()["Topics"]},
        "AWS::Logs::LogGroup": lambda: {
            g["logGroupName"] for g in cdk.client("logs").describe_log_groups()["logGroups"]
        },
        "AWS::S3::Bucket": lambda: {b["Name"] for b in cdk.client("s3").list_buckets()["Buckets"]},
        "AWS::KMS::Key": lambda: _live_keys(cdk.client("kms")),
        "AWS::Lambda::Function": lambda: {
            f["FunctionName"] for f in cdk.client("lambda").list_functions()["Functions"]
        },
        "AWS::SecretsManager::Secret": lambda: {
            secret["ARN"] for secret in cdk.client("secretsmanager").list_secrets()["SecretList"]
        },
    }
    lookup = lookups.get(resource_type)
    return None if lookup is None else set(lookup())


def _live_keys(kms: Any) -> set[str]:
    """Every KMS key the emulator lists.

    Key state is not read: moto's ``DescribeKey`` fails on keys that CloudFormation created (it
    stores their policy as a dict). The stack's keys are retained on purpose, so they count as
    kept, not as left behind.
    """
    return {str(key["KeyId"]) for page in kms.get_paginator("list_keys").paginate() for key in page["Keys"]}


def stack_name_of(assembly: Path) -> str:
    """The CloudFormation name of the app's stack in a cloud assembly."""
    artifact = json.loads((assembly / "manifest.json").read_text())["artifacts"][STACK_ID]
    return str(artifact["properties"].get("stackName", STACK_ID))


def _describe(args: tuple[str, ...]) -> str:
    """The command without its paths and parameters, for timing tables."""
    shown: list[str] = []
    skip = False
    for argument in args:
        if skip:
            skip = False
        elif argument in ("--app", "--output", "--parameters"):
            skip = True
        else:
            shown.append(argument)
    return "cdk " + " ".join(shown)


def context_args(settings: Mapping[str, object]) -> list[str]:
    """``-c key=value`` for each setting, written the way the settings parser reads them."""
    return [argument for key, value in settings.items() for argument in ("-c", f"{key}={_context_value(value)}")]


def _context_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def stack_summary(cdk: LocalCdk, stack_name: str) -> str:
    """What is deployed: resource counts by type, then the outputs."""
    cloudformation = cdk.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    paginator = cloudformation.get_paginator("list_stack_resources")
    types = Counter(
        summary["ResourceType"] or "(type not reported by the emulator)"
        for page in paginator.paginate(StackName=stack_name)
        for summary in page["StackResourceSummaries"]
    )
    lines = [f"Stack {stack_name}: {stack['StackStatus']}, {sum(types.values())} resources"]
    lines += [f"  {count:3d} x {resource_type}" for resource_type, count in sorted(types.items())]
    lines.append("Outputs")
    width = max((len(output["OutputKey"]) for output in stack.get("Outputs", [])), default=0)
    lines += [
        f"  {output['OutputKey']:<{width}}  {output['OutputValue']}"
        for output in sorted(stack.get("Outputs", []), key=lambda output: output["OutputKey"])
    ]
    return "\n".join(lines)


def _workdir() -> Path:
    path = local_aws.state_dir() / "assemblies"
    path.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=path))


def _settings(pairs: list[str]) -> dict[str, object]:
    settings: dict[str, object] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"error: settings are KEY=VALUE, received {pair!r}")
        settings[key] = value
    return settings


def _up(settings: dict[str, object]) -> int:
    server, started = local_aws.start_background()
    where = "started" if started else "found running"
    print(f"Local AWS emulator (moto) {where} on {server.endpoint}; nothing leaves this machine.")
    cdk = LocalCdk(server, _workdir())
    if not cdk.stack_exists("CDKToolkit"):
        print("cdk bootstrap ...", flush=True)
        cdk.bootstrap()
    print(f"cdk deploy {shlex.join(context_args(settings)) or '(default settings)'} ...", flush=True)
    assembly, result = cdk.deploy(settings, cdk.register_node_image())
    print(f"Deployed in {result.seconds:.1f} s.\n")
    print(stack_summary(cdk, stack_name_of(assembly)))
    print(
        "\nNext:\n"
        "  make local-diff ARGS='node_count=4'     # what a settings change would do, as a pull-request comment\n"
        "  make local-deploy ARGS='node_count=4'   # apply it (the same emulator and stack, updated)\n"
        '  eval "$(.venv/bin/python -m alchemy_tools.local_aws env)"   # then boto3 or the AWS CLI reach the emulator\n'
        "  make local-destroy                       # cdk destroy, then stop the emulator (all its state is lost)"
    )
    return 0


def _diff(settings: dict[str, object]) -> int:
    """Prints the diff and its comment; exits 1 when the comment's verdict blocks the change."""
    cdk = LocalCdk(local_aws.running_background(), _workdir())
    result = cdk.diff(settings)
    print(result.output)
    diffs = cdk_diff_comment.parse(result.output)
    decision = cdk_diff_comment.decide(diffs, cdk_diff_comment.Policy())
    context = cdk_diff_comment.RunContext.local(ROOT)
    for diff in diffs:
        print(cdk_diff_comment.render_comment(diff, decision.for_stack(diff.stack_name), context))
    if decision.failed:
        print("local-diff: blocked: destructive changes (see the comment above)", file=sys.stderr)
        return 1
    return 0


def _down(settings_pairs: list[str]) -> int:
    """Destroys the stack, checks that none of it is left, then stops the emulator this checkout started."""
    if local_aws.read_state() is None:
        print("No local emulator is running; nothing to tear down.")
        return 0
    state = local_aws.background_state()
    if state is None:
        local_aws.stop_background()
        print("The recorded local emulator had already stopped; its state file is removed.")
        return 0
    cdk = LocalCdk(state.server(), _workdir())
    settings = _settings(settings_pairs)
    status = 0
    if cdk.stack_exists(stack_name_of(cdk.synth(settings))):
        print("cdk destroy ...", flush=True)
        destroyed = cdk.destroy(settings)
        print(destroyed.result.output.strip())
        by_hand = ", ".join(f"{len(ids)} x {kind}" for kind, ids in destroyed.worked_around.items() if ids)
        if by_hand:
            print(f"(deleted by hand, as moto's stack deletion cannot: {by_hand})")
        print(destroy_report(destroyed))
        status = 0 if destroyed.clean else 1
    else:
        print("No stack deployed on the emulator; nothing to destroy.")
    local_aws.stop_background()
    print(f"Local AWS emulator (pid {state.pid}) stopped; everything it held is gone.")
    return status


def destroy_report(destroyed: Destroyed) -> str:
    """What is left of the stack after destroy, by resource type, and what could not be checked."""
    lines = []
    if destroyed.clean:
        lines.append("Checked after destroy: nothing of the stack remains.")
    else:
        lines.append("Left after destroy (not retained on purpose):")
        lines += [f"  {kind}: {', '.join(ids)}" for kind, ids in destroyed.remaining.items()]
    if destroyed.retained:
        kept = ", ".join(f"{len(ids)} x {kind}" for kind, ids in destroyed.retained.items())
        lines.append(f"Kept on purpose (DeletionPolicy Retain): {kept}")
    if destroyed.unchecked:
        lines.append("Not looked up (parts of another resource): " + ", ".join(destroyed.unchecked))
    if destroyed.not_modelled:
        lines.append("Never created by moto, so not proven gone: " + ", ".join(destroyed.not_modelled))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alchemy_tools.local_deploy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start the emulator if needed, bootstrap once, deploy, print what was deployed"),
        ("diff", "cdk diff against the deployed stack, then the pull-request comment it would give"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="settings, as with cdk -c")
    down = commands.add_parser("down", help="cdk destroy, then stop the emulator")
    down.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="settings, as with cdk -c")
    args = parser.parse_args(argv)
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    if args.command == "up":
        return _up(_settings(args.settings))
    if args.command == "diff":
        return _diff(_settings(args.settings))
    return _down(args.settings)


if __name__ == "__main__":
    sys.exit(main())
