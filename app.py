#!/usr/bin/env python3
"""CDK app of the Alchemy platform: settings -> stack -> cdk-nag packs -> synth."""

from __future__ import annotations

import sys

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from alchemy_stack import AlchemyStack, Settings, SettingsError


def main() -> int:
    app = App()
    try:
        settings = Settings.from_context(app.node.get_all_context())
        AlchemyStack(
            app,
            "AlchemyStack",
            settings=settings,
            stack_name=settings.cluster_name,
            description="Alchemy micro-services platform: VPC, NAT instances, classic ELB and Flatcar nodes",
            env=Environment(account=settings.account, region=settings.region),
        )
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
