"""Synthesizes the app (or one construct) in-process the way the CDK CLI does, once per variant."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, Stack
from aws_cdk.assertions import Template

import app as cdk_app
from alchemy_stack import AlchemyStack

ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = json.loads((ROOT / "cdk.json").read_text())
CDK_CONTEXT: dict[str, Any] = CDK_JSON["context"]
"""The context the CLI gives the app: settings defaults and feature flags from cdk.json."""

TEST_ACCOUNT = "123456789012"
TEST_REGION = "eu-west-1"
TEST_CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"

CACHED_LOOKUPS = {
    f"availability-zones:account={TEST_ACCOUNT}:region={TEST_REGION}": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
    (
        f"ami:account={TEST_ACCOUNT}:filters.architecture.0=x86_64:filters.image-type.0=machine:"
        f"filters.name.0=Flatcar-stable-*-hvm:filters.state.0=available:owners.0=075585003325:region={TEST_REGION}"
    ): "ami-0fedcba9876543210",
    (
        f"ssm:account={TEST_ACCOUNT}:parameterName=/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64:"
        f"region={TEST_REGION}"
    ): "ami-0a1b2c3d4e5f60718",
}
"""What `cdk.context.json` holds after the CLI has done an account-bound synth's lookups."""

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "https": {"certificate_arn": TEST_CERTIFICATE},
    "own_network": {"vpc_cidr": "10.20.0.0/16", "az_count": 3, "nat_per_az": True, "nat_instance_type": "t3.small"},
    "own_nodes": {
        "node_count": 5,
        "node_max_count": 8,
        "node_instance_type": "m6i.large",
        "node_volume_gb": 80,
        "hello_world_instances": 3,
        "router_timeout_seconds": 45,
    },
    "restricted_ingress_with_key_pair": {"ingress_cidrs": "203.0.113.0/24", "key_pair_name": "ops"},
    "account_bound": {"account": TEST_ACCOUNT, "region": TEST_REGION, **CACHED_LOOKUPS},
    "image_override": {"node_image_id": "ami-0123456789abcdef0"},
    "production": {"profile": "production", "certificate_arn": TEST_CERTIFICATE},
}
"""Setting combinations that every whole-app check (rule packs, cfn-lint) runs on. Tests of one setting's effect
use these where one fits: each other combination is one more build and synth (about 1.3 s of CPU)."""


_SCRATCH = tempfile.TemporaryDirectory(prefix="alchemy-tests-")
"""This test process's scratch space for cloud assemblies, removed when the process ends."""


def scratch_directory(prefix: str) -> str:
    """A new directory for one app's cloud assembly (``outdir``), removed with the test process's scratch space."""
    return tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH.name)


def cdk_app_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context plus ``-c key=value`` style overrides and the CLI's path metadata."""
    return {**CDK_CONTEXT, "aws:cdk:enable-path-metadata": True, **overrides}


@dataclass(frozen=True)
class Synthesis:
    """One synthesized variant of the app."""

    stack: AlchemyStack
    template: Template
    template_json: dict[str, Any]
    validation_report: dict[str, Any]
    manifest: dict[str, Any]
    """The cloud assembly's manifest.json (``missing`` lists lookups the CLI still has to do)."""
    passed_validation: bool
    outdir: Path
    """The cloud assembly: templates, and the file assets as CDK staged them."""

    @property
    def missing_lookups(self) -> list[dict[str, Any]]:
        """Context lookups (``provider``, ``key``, ``props``) the CLI would perform and cache."""
        return list(self.manifest.get("missing", []))

    @property
    def nag_violations(self) -> list[dict[str, Any]]:
        """Every unacknowledged rule-pack finding, of any severity."""
        return [
            violation
            for report in self.validation_report.get("pluginReports", [])
            for violation in report.get("violations", [])
        ]


def _frozen(overrides: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, json.dumps(value)) for key, value in overrides.items()))


@functools.cache
def _synthesize(frozen: tuple[tuple[str, str], ...]) -> Synthesis:
    overrides = {key: json.loads(value) for key, value in frozen}
    outdir = scratch_directory("synth-")
    app = cdk_app.create_app(context=cdk_app_context(**overrides), outdir=outdir)
    stack = cdk_app.build(app)
    try:
        app.synth()
        passed_validation = True
    except RuntimeError as error:
        # The rule packs fail synthesis; the report says why, and tests read it.
        if "ValidationFailed" not in str(error):
            raise
        passed_validation = False
    template_json = json.loads((Path(outdir) / f"{cdk_app.STACK_ID}.template.json").read_text())
    report_path = Path(outdir) / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"pluginReports": []}
    return Synthesis(
        stack=stack,
        template=Template.from_json(template_json),
        template_json=template_json,
        validation_report=report,
        manifest=json.loads((Path(outdir) / "manifest.json").read_text()),
        passed_validation=passed_validation,
        outdir=Path(outdir),
    )


def synthesize(**overrides: Any) -> Synthesis:
    """The app synthesized with these settings (as ``cdk synth -c key=value`` would); cached."""
    return _synthesize(_frozen(overrides))


def bare_app(**props: Any) -> App:
    """An ``App`` for a test harness, without CDK's built-in CloudFormation validation, as the app has it.

    That validation warms up for about 1.7 s in each test process and is not what such a test is about:
    cfn-lint checks every synthesized variant of the real app instead (scripts/lint_templates.py, in `make check`).
    """
    return App(builtin_cloud_formation_validation=False, **props)


def construct_template(build: Callable[[Stack], object], **context: Any) -> Template:
    """Template of a stack that holds only what ``build`` adds: one construct, tested alone."""
    app = bare_app(context=cdk_app_context(**context), outdir=scratch_directory("construct-"))
    stack = Stack(app, "ConstructUnderTest")
    build(stack)
    return Template.from_stack(stack)
