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
        """Synthesizes the app with these settings (``-c key=value``) into a new assembly."""
        assembly = self._new_assembly_dir()
        self.run("synth", "--quiet", "--output", str(assembly), *context_args(settings))
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
        assembly = self.synth(settings)
        flags = ("--fail",) if fail else ()
        return self.run("diff", "--app", str(assembly), "--no-color", *local_emulator.DIFF_ARGS, *flags, check=not fail)

    def destroy(self, settings: Mapping[str, object]) -> Destroyed:
        """``cdk destroy``, with what moto's stack deletion cannot delete deleted around it."""
        assembly = self.synth(settings)
        ec2 = self.client("ec2")
        resources = self.stack_resources(stack_name_of(assembly))
        worked_around = local_emulator.before_destroy(ec2, self.client("iam"), resources)
        result = self.run("destroy", "--force", "--app", str(assembly))
        worked_around.update(local_emulator.after_destroy(ec2, resources))
        return Destroyed(result, {kind: tuple(ids) for kind, ids in worked_around.items()})

    def stack_resources(self, stack_name: str) -> dict[str, list[str]]:
        """Physical ids of the stack's resources, by type."""
        paginator = self.client("cloudformation").get_paginator("list_stack_resources")
        resources: dict[str, list[str]] = {}
        for page in paginator.paginate(StackName=stack_name):
            for summary in page["StackResourceSummaries"]:
                resources.setdefault(summary["ResourceType"], []).append(str(summary["PhysicalResourceId"]))
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
    path = local_aws.STATE_DIR / "assemblies"
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
    server = local_aws.start_background()
    print(f"Local AWS emulator (moto) on {server.endpoint}; nothing leaves this machine.")
    cdk = LocalCdk(server, _workdir())
    bootstrapped = cdk.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])
    if not any(stack["StackName"] == "CDKToolkit" for stack in bootstrapped["StackSummaries"]):
        print("cdk bootstrap ...", flush=True)
        cdk.bootstrap()
    print(f"cdk deploy {shlex.join(context_args(settings)) or '(default settings)'} ...", flush=True)
    assembly, result = cdk.deploy(settings, cdk.register_node_image())
    print(f"Deployed in {result.seconds:.1f} s.\n")
    print(stack_summary(cdk, stack_name_of(assembly)))
    print(
        "\nNext:\n"
        "  make local-diff ARGS='node_count=4'     # what a settings change would do, as a pull-request comment\n"
        "  make local-deploy ARGS='node_count=4'   # apply it\n"
        '  eval "$(.venv/bin/python -m alchemy_tools.local_aws env)"   # then boto3 or the AWS CLI reach the emulator\n'
        "  make local-destroy                       # cdk destroy, then stop the emulator (all its state is lost)"
    )
    return 0


def _diff(settings: dict[str, object]) -> int:
    cdk = LocalCdk(local_aws.running_background(), _workdir())
    result = cdk.diff(settings)
    print(result.output)
    diffs = cdk_diff_comment.parse(result.output)
    decision = cdk_diff_comment.decide(diffs, cdk_diff_comment.Policy())
    for diff in diffs:
        print(cdk_diff_comment.render_comment(diff, decision.for_stack(diff.stack_name)))
    return 0


def _down(settings_pairs: list[str]) -> int:
    if local_aws.background_state() is None:
        print("No local emulator is running; nothing to tear down.")
        return 0
    cdk = LocalCdk(local_aws.running_background(), _workdir())
    print("cdk destroy ...", flush=True)
    destroyed = cdk.destroy(_settings(settings_pairs))
    print(destroyed.result.output.strip())
    by_hand = ", ".join(f"{len(ids)} x {kind}" for kind, ids in destroyed.worked_around.items() if ids)
    if by_hand:
        print(f"(deleted by hand, as moto's stack deletion cannot: {by_hand})")
    local_aws.stop_background()
    print("Local AWS emulator stopped; everything it held is gone.")
    return 0


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
