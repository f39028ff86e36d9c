"""The node bundle as an S3 asset: every node fetches its scripts, units and configuration at boot.

The bundle used to travel inside the user data, which EC2 caps at 16 KB; with the services of a
real platform in it, it no longer fits. As a file asset it is staged into ``cdk.out`` at synth and
uploaded by ``cdk deploy`` like any asset. Its object key is its content hash, and the user data
names that key and the archive's SHA-256, so a changed bundle still changes the launch template
and the nodes roll, one at a time.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct, DependencyGroup

from alchemy_constructs.bundle_staging import STAGING_DIRECTORY
from alchemy_constructs.grants import grant_statements


def compressed_archive(tar: bytes) -> bytes:
    """``tar`` gzipped with no name and time zero: the same files always give the same bytes."""
    return gzip.compress(tar, compresslevel=9, mtime=0)


class NodeBundle(Construct):
    """An archive of node files as an S3 asset, with what a node needs to fetch and check it."""

    asset: s3_assets.Asset
    """The staged asset (``cdk.out/asset.<hash>.gz``)."""
    sha256: str
    """SHA-256 of the archive, which the node checks before it unpacks anything."""
    url: str
    """``s3://bucket/key`` of the archive once ``cdk deploy`` has published it."""
    archive_path: Path
    """The archive as written at synth, before CDK stages a copy into ``cdk.out``."""

    def __init__(self, scope: Construct, construct_id: str, *, archive: bytes) -> None:
        super().__init__(scope, construct_id)
        if not archive.startswith(b"\x1f\x8b"):
            raise ValueError("NodeBundle archive must be gzip-compressed (see compressed_archive)")
        self.sha256 = hashlib.sha256(archive).hexdigest()
        path = self.archive_path = STAGING_DIRECTORY / f"{self.sha256}.tar.gz"
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != self.sha256:
            STAGING_DIRECTORY.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = path.with_suffix(f".{id(self)}.part")
            partial.write_bytes(archive)
            partial.replace(path)
        self.asset = s3_assets.Asset(self, "Asset", path=str(path))
        self.url = f"s3://{self.asset.s3_bucket_name}/{self.asset.s3_object_key}"

    def read_statement(self) -> iam.PolicyStatement:
        """Reading this one object, and nothing else of the bootstrap bucket."""
        return iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[self.asset.bucket.arn_for_objects(self.asset.s3_object_key)],
        )

    def grant_read(self, grantee: iam.IGrantable) -> DependencyGroup:
        """Lets ``grantee`` read this one object, and nothing else of the bootstrap bucket.

        Returns the policies that hold the permission (a node's first boot fetches the bundle).
        """
        return grant_statements(grantee, [self.read_statement()])
