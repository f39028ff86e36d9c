#!/usr/bin/env python3
"""CDK app of the Alchemy platform: settings -> stack -> cdk-nag packs -> synth."""

from __future__ import annotations

import sys

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from alchemy_stack import AlchemyStack, Settings, SettingsError

STACK_ID = "AlchemyStack"


def build(app: App) -> AlchemyStack:
    """Reads the settings from the app's context and adds the stack and the rule packs.

    Raises :class:`SettingsError` for a bad setting, before anything is synthesized.
    """
    settings = Settings.from_context(app.node.get_all_context())
    stack = AlchemyStack(
        app,
        STACK_ID,
        settings=settings,
        stack_name=settings.cluster_name,
        description="Alchemy micro-services platform: VPC, NAT instances, classic ELB and Flatcar nodes",
        env=Environment(account=settings.account, region=settings.region),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


def main() -> int:
    app = App()
    try:
        build(app)
    except SettingsError as error:
        # A user's mistake gets one line, not a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
