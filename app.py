#!/usr/bin/env python3
"""CDK app of the Alchemy platform: settings -> stack -> cdk-nag packs -> synth."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# First, so that the jsii kernel aws_cdk starts gets its compile cache (alchemy_stack/kernel_compile_cache.py).
from alchemy_stack import AlchemyStack, Settings, SettingsError

# isort: split
from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks

STACK_ID = "AlchemyStack"


def create_app(**props: Any) -> App:
    """The CDK app, without CDK's built-in template validation.

    That validation is cfn-lint's rule set run inside every synth: it costs about 2.8 s of
    a 4 s synth, and it rejects the placeholder AMI id CDK uses before a lookup is cached.
    The quality gate runs the pinned cfn-lint on every synthesized variant instead (0 findings).
    """
    return App(builtin_cloud_formation_validation=False, **props)


def build(app: App, *, settings: Settings | None = None) -> AlchemyStack:
    """Adds the stack and the rule packs to ``app``.

    ``settings`` default to the app's context (``cdk.json``, ``-c key=value``). Raises
    :class:`SettingsError` for a bad setting, before anything is synthesized.
    """
    settings = Settings.from_context(app.node.get_all_context()) if settings is None else settings
    stack = AlchemyStack(
        app,
        STACK_ID,
        settings=settings,
        stack_name=settings.cluster_name,
        description="Alchemy micro-services platform: VPC, NAT instances, classic ELB and Flatcar nodes",
        env=Environment(account=settings.account, region=settings.region),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app))
    return stack


def run(
    build_app: Callable[[App], object],
    app: App | None = None,
    *,
    refused: tuple[type[Exception], ...] = (SettingsError,),
) -> int:
    """Builds ``app`` (default: the CLI's, context from the environment) with ``build_app`` and synthesizes it;
    1 with one line on stderr, not a traceback, when the build raises one of ``refused`` (a user's mistake)."""
    app = create_app() if app is None else app
    try:
        build_app(app)
    except refused as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


def main(app: App | None = None) -> int:
    """Synthesizes ``app`` (default: the CLI's, context from the environment); 1 on a bad setting."""
    return run(build, app)


if __name__ == "__main__":
    sys.exit(main())
