"""Which Amazon Linux 2023 AMI the NAT instances boot, pinned so that a deploy never swaps it unseen."""

from __future__ import annotations

from aws_cdk import CfnParameter, Stack, Token
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from alchemy_constructs.node_image import FixedImage

NAT_IMAGE_SSM_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
"""AWS's public parameter naming the newest x86_64 Amazon Linux 2023 AMI (kernel 6.1) of a region:
the image CDK's NAT instance provider boots and configures."""

IMAGE_ID_PARAMETER = "NatImageId"


class NatImage(Construct):
    """Resolves the NAT AMI once, not on every deploy.

    CDK's NAT provider defaults to an ``AWS::SSM::Parameter::Value`` template parameter that
    CloudFormation resolves again on every stack update: when AWS publishes a new image, the
    next unrelated deploy replaces the NAT instance (an egress outage, and a new Elastic IP
    association) while ``cdk diff`` shows no change. Instead, like :class:`NodeImage`:

    1. The stack is bound to an account and region: the SSM parameter is read once by the
       CDK CLI and cached in ``cdk.context.json``, so the AMI id is a literal in the template
       and changes only when that cache entry is reset (a reviewed change in ``cdk diff``).
    2. Otherwise (an environment-agnostic synth): a ``NatImageId`` parameter of type
       ``AWS::EC2::Image::Id`` with no default. ``cdk deploy`` keeps its previous value on
       later deploys, so the instance changes only when someone passes a new id.
    """

    machine_image: ec2.IMachineImage
    """The image for the NAT instances."""
    parameter: CfnParameter | None
    """The ``NatImageId`` parameter of an environment-agnostic synth, else None."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.parameter = None
        if not Token.is_unresolved(stack.account) and not Token.is_unresolved(stack.region):
            self.machine_image = ec2.MachineImage.latest_amazon_linux2023(
                kernel=ec2.AmazonLinux2023Kernel.KERNEL_6_1,
                cpu_type=ec2.AmazonLinuxCpuType.X86_64,
                cached_in_context=True,
            )
        else:
            self.parameter = CfnParameter(
                stack,
                IMAGE_ID_PARAMETER,
                type="AWS::EC2::Image::Id",
                description=(
                    "Amazon Linux 2023 (x86_64) AMI id for the NAT instances in the target region: "
                    f"aws ssm get-parameter --name {NAT_IMAGE_SSM_PARAMETER} --query Parameter.Value. "
                    "Synthesize with -c account=... -c region=... to have it looked up and pinned instead."
                ),
            )
            self.machine_image = FixedImage(self.parameter.value_as_string)

    def resolve_latest_at_deploy(self) -> None:
        """Lets CloudFormation read the newest AMI from AWS's SSM parameter (the unpinned way).

        Only for an emulator that is given no image id: on AWS it would bring back the
        unseen NAT replacement this construct exists to prevent.
        """
        if self.parameter is not None:
            self.parameter.type = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
            self.parameter.default = NAT_IMAGE_SSM_PARAMETER
