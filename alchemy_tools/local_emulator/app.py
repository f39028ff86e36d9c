"""The CDK app for the local emulator: the product's app, adapted to moto's gaps.

``alchemy_tools.local_deploy`` synthesizes with it (``cdk synth --app "python -m
alchemy_tools.local_emulator.app"``); the product's ``app.py`` knows nothing of the emulator.
It builds the same stack from the same settings and then changes only what
:mod:`alchemy_tools.local_emulator.template` lists, and it refuses to run unless
``ALCHEMY_LOCAL_EMULATOR`` is on and ``AWS_ENDPOINT_URL`` is on this machine: a template
adapted for moto must never reach AWS.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping

from aws_cdk import App

import app as cdk_app
from alchemy_stack import AlchemyStack, Settings, SettingsError
from alchemy_tools import local_emulator
from alchemy_tools.local_emulator import template as emulator_template


def build(app: App, environ: Mapping[str, str] = os.environ) -> AlchemyStack:
    """The product's stack from the app's context, adapted for the emulator.

    No image is built for the emulator (no Docker engine there): pinned stand-ins replace the
    images the settings leave unset. The NAT image is read at deploy time, since the emulator's
    deploy names only the node image. Raises :class:`local_emulator.EmulatorTargetError` unless
    ``environ`` says the target is the emulator on this machine.
    """
    if not local_emulator.enabled(environ):
        raise local_emulator.EmulatorTargetError(
            environ.get(local_emulator.SWITCH, ""),
            f"this app synthesizes for the local emulator only: set it to 1 with "
            f"{local_emulator.ENDPOINT_VARIABLE} on this machine (app.py is the app for AWS)",
        )
    settings = Settings.from_context(app.node.get_all_context())
    images = {"router_image": settings.router_image, "hello_world_image": settings.hello_world_image}
    stand_ins = local_emulator.placeholder_images(images)
    settings = dataclasses.replace(
        settings,
        router_image=stand_ins.get("router_image", settings.router_image),
        hello_world_image=stand_ins.get("hello_world_image", settings.hello_world_image),
    )
    stack = cdk_app.build(app, settings=settings)
    emulator_template.adapt(stack)
    stack.nat_image.resolve_latest_at_deploy()
    return stack


def main(app: App | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """Synthesizes for the emulator; 1 with one line on a bad setting or a target that is not the emulator."""
    return cdk_app.run(
        lambda target: build(target, environ), app, refused=(SettingsError, local_emulator.EmulatorTargetError)
    )


if __name__ == "__main__":
    sys.exit(main())
