"""Which Flatcar Container Linux AMI the nodes boot."""

from __future__ import annotations

import re

import jsii
from aws_cdk import CfnParameter, Stack, Token
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

FLATCAR_OWNER_ACCOUNT = "075585003325"
"""AWS account that publishes Flatcar Container Linux AMIs."""

IMAGE_ID_PARAMETER = "NodeImageId"

CHANNELS = ("stable", "beta", "alpha", "lts")
"""Flatcar's release channels."""

_AMI_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")


def flatcar_name_pattern(channel: str) -> str:
    """AMI name pattern of a Flatcar channel, e.g. ``Flatcar-stable-*-hvm``."""
    return f"Flatcar-{channel}-*-hvm"


@jsii.implements(ec2.IMachineImage)
class FixedImage:
    """An AMI id valid in one region (a literal or a deploy-time parameter)."""

    def __init__(self, image_id: str) -> None:
        self._image_id = image_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(
            image_id=self._image_id,
            os_type=ec2.OperatingSystemType.LINUX,
            user_data=ec2.UserData.for_linux(),
        )


class NodeImage(Construct):
    """Resolves the node AMI without ever inventing an id.

    In order of precedence:

    1. ``image_id`` given: that AMI.
    2. The stack is bound to an account and region: ``MachineImage.lookup`` of the newest
       x86_64 Flatcar AMI of ``channel`` from Flatcar's owner account, cached by the CDK CLI
       in ``cdk.context.json`` (so later synths are offline and deterministic).
    3. Otherwise (an environment-agnostic synth): a ``NodeImageId`` CloudFormation
       parameter with no default, so ``cdk deploy`` stops until one is given.
    """

    machine_image: ec2.IMachineImage
    """The image for the launch template."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        channel: str,
        image_id: str | None = None,
    ) -> None:
        """
        :param channel: Flatcar release channel (stable, beta, alpha, lts).
        :param image_id: Default: none, look the image up (or ask for it at deploy time).
        """
        super().__init__(scope, construct_id)
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}; received {channel!r}")
        if image_id is not None and not Token.is_unresolved(image_id) and not _AMI_ID.match(image_id):
            raise ValueError(f"image_id must be an AMI id such as ami-0123456789abcdef0; received {image_id!r}")
        stack = Stack.of(self)
        if image_id is not None:
            self.machine_image = FixedImage(image_id)
        elif not Token.is_unresolved(stack.account) and not Token.is_unresolved(stack.region):
            self.machine_image = ec2.MachineImage.lookup(
                name=flatcar_name_pattern(channel),
                owners=[FLATCAR_OWNER_ACCOUNT],
                filters={"architecture": ["x86_64"], "state": ["available"]},
            )
        else:
            parameter = CfnParameter(
                stack,
                IMAGE_ID_PARAMETER,
                type="AWS::EC2::Image::Id",
                description=(
                    f"Flatcar Container Linux ({channel}) AMI id for the nodes in the target region. "
                    "Synthesize with -c account=... -c region=... to have it looked up, "
                    "or with -c node_image_id=ami-... to fix it."
                ),
            )
            self.machine_image = FixedImage(parameter.value_as_string)
