#!/usr/bin/env python3
"""CDK app of the Alchemy platform: settings -> stack -> cdk-nag packs -> synth."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks

from alchemy_stack import AlchemyStack, Settings, SettingsError
from alchemy_tools import local_emulator
from alchemy_tools.local_emulator import template as emulator_template

STACK_ID = "AlchemyStack"


def create_app(**props: Any) -> App:
    """The CDK app, without CDK's built-in template validation.

    That validation is cfn-lint's rule set run inside every synth: it costs about 2.8 s of
    a 4 s synth, and it rejects the placeholder AMI id CDK uses before a lookup is cached.
    The tests run the pinned cfn-lint on every synthesized variant instead (0 findings).
    """
    return App(builtin_cloud_formation_validation=False, **props)


def build(app: App, environ: Mapping[str, str] = os.environ) -> AlchemyStack:
    """Reads the settings from the app's context and adds the stack and the rule packs.

    Raises :class:`SettingsError` for a bad setting, before anything is synthesized.
    ``environ`` only matters for the local emulator (see :mod:`alchemy_tools.local_emulator`).
    """
    settings = Settings.from_context(app.node.get_all_context())
    for_emulator = local_emulator.enabled(environ)
    if for_emulator:
        # No image is built for the emulator (no Docker engine there): pinned stand-ins instead.
        images = {"router_image": settings.router_image, "hello_world_image": settings.hello_world_image}
        stand_ins = local_emulator.placeholder_images(images)
        settings = dataclasses.replace(
            settings,
            router_image=stand_ins.get("router_image", settings.router_image),
            hello_world_image=stand_ins.get("hello_world_image", settings.hello_world_image),
        )
    stack = AlchemyStack(
        app,
        STACK_ID,
        settings=settings,
        stack_name=settings.cluster_name,
        description="Alchemy micro-services platform: VPC, NAT instances, classic ELB and Flatcar nodes",
        env=Environment(account=settings.account, region=settings.region),
    )
    if for_emulator:
        emulator_template.adapt(stack)
        # The emulator's deploy names only the node image; it has no pinned NAT image to give.
        stack.nat_image.resolve_latest_at_deploy()
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app))
    return stack


def main(app: App | None = None) -> int:
    """Synthesizes ``app`` (default: the CLI's, context from the environment); 1 on a bad setting."""
    app = create_app() if app is None else app
    try:
        build(app)
    except (SettingsError, local_emulator.EmulatorTargetError) as error:
        # A user's mistake gets one line, not a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
