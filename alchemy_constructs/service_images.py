"""The router and hello_world images, built from the project's ``alchemy_services/`` by ``cdk deploy``.

Each image is a ``DockerImageAsset``: at synth CDK only copies the build context into the cloud
assembly and records the build (no Docker, no network); ``cdk deploy`` builds it for the nodes'
architecture and pushes it to the CDK bootstrap's ECR repository. The nodes pull it with their
instance role: they may read exactly that repository, and log in to ECR at boot with a token
the role gets (``ecr:GetAuthorizationToken``), never a stored credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct, DependencyGroup

from alchemy_constructs.grants import grant_statements

TARGETS = {"router_image": "router", "hello_world_image": "hello_world"}
"""Placeholder of the service units -> build target of ``alchemy_services/Dockerfile``."""

EXCLUDED = ("**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/.ruff_cache", "**/.venv")
"""Local leftovers that must not change the asset's hash (a new hash rolls every node)."""

PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


class ServiceImages(Construct):
    """Image assets for the placeholders ``wanted`` names; :meth:`grant_pull` lets the nodes pull them."""

    assets: dict[str, ecr_assets.DockerImageAsset]
    """By placeholder name (``router_image``, ``hello_world_image``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        directory: Path,
        wanted: tuple[str, ...],
        platform: ecr_assets.Platform = ecr_assets.Platform.LINUX_AMD64,
    ) -> None:
        """
        :param directory: the build context (``alchemy_services/``), whose Dockerfile has one target per service.
        :param wanted: the placeholders to build an image for (those the settings leave unset).
        :param platform: Default: linux/amd64, the nodes' architecture.
        """
        super().__init__(scope, construct_id)
        unknown = sorted(set(wanted) - set(TARGETS))
        if unknown:
            raise ValueError(f"wanted: no image target for {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        if wanted and not (directory / "Dockerfile").is_file():
            raise ValueError(f"directory must be a build context with a Dockerfile; received {directory}")
        self.assets = {
            name: ecr_assets.DockerImageAsset(
                self,
                TARGETS[name],
                directory=str(directory),
                target=TARGETS[name],
                platform=platform,
                exclude=list(EXCLUDED),
            )
            for name in wanted
        }

    @property
    def image_uris(self) -> Mapping[str, str]:
        """Placeholder -> the image's ECR URI (a deploy-time value)."""
        return {name: asset.image_uri for name, asset in self.assets.items()}

    def grant_pull(self, grantee: iam.IGrantable) -> DependencyGroup:
        """Lets ``grantee`` pull the images (and nothing else from ECR); nothing when no image is built.

        Returns the policies that hold the permission (empty without images): a node's first boot pulls.
        """
        if not self.assets:
            return DependencyGroup()
        stack = Stack.of(self)
        # The assets usually share the bootstrap's one repository: name each repository once.
        repositories = list(
            {
                str(stack.resolve(a.repository.repository_arn)): a.repository.repository_arn
                for a in self.assets.values()
            }.values()
        )
        return grant_statements(
            grantee,
            [
                iam.PolicyStatement(sid="PullServiceImages", actions=list(PULL_ACTIONS), resources=repositories),
                iam.PolicyStatement(sid="LogInToEcr", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            ],
            acknowledgments={
                "AwsSolutions-IAM5[Resource::*]": (
                    "ecr:GetAuthorizationToken takes no resource (AWS requires Resource *); the token it returns "
                    "lets the grantee pull only from repositories its policy names, here the images' one repository."
                )
            },
        )
