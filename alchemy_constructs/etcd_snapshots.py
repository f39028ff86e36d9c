"""The etcd snapshot bucket's rules: every snapshot is written once, and read only for a restore.

Write-once is a bucket policy that refuses any object creation under the snapshot prefix that
does not carry ``If-None-Match: *`` (S3's conditional write: it fails with 412 when the key
exists). Object Lock was the other choice; it was not taken because in a versioned bucket it
does not stop an overwrite (a new version simply becomes current), it can only be turned on for
a new bucket (replacing the retained one), and its retention would fight the bucket's expiry.

Restoring runs on the nodes from an operator's Session Manager shell (OPERATIONS.md, "Restoring a
snapshot"): the operator assumes the restore role on their own machine, presigns the chosen
snapshot's URL, and the nodes download it with curl. The node role itself never reads a
snapshot, so a compromised node or container cannot read the cluster's history from S3.
"""

from __future__ import annotations

import re

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct, DependencyGroup, IConstruct

from alchemy_constructs.acknowledge import acknowledge, nag_objects_name
from alchemy_constructs.grants import grant_statements
from alchemy_constructs.log_bucket import DEFAULT_EXPIRATION, LogBucket

_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$")
"""An S3 key prefix of safe characters that ends in ``/`` (one folder, never the whole bucket)."""

CONDITIONAL_WRITE = {"s3:if-none-match": "*"}
"""The only header value S3 takes for If-None-Match: create the key only if it does not exist."""


def via_s3(scope: IConstruct) -> dict[str, dict[str, str]]:
    """A KMS condition: only S3 may use the key on the principal's behalf."""
    return {"StringEquals": {"kms:ViaService": f"s3.{Stack.of(scope).region}.amazonaws.com"}}


def write_once(bucket: s3.IBucket, prefix: str) -> None:
    """Denies, to every principal, creating an object under ``prefix`` without If-None-Match: *.

    ``s3:ObjectCreationOperation`` is true for PutObject, CompleteMultipartUpload and CopyObject,
    false for CreateMultipartUpload and UploadPart, which take no conditional header: a multipart
    upload's parts go through, and its completion needs the header like a single put.
    """
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="EtcdSnapshotsAreWrittenOnce",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"{prefix}*")],
            conditions={
                "StringNotEquals": CONDITIONAL_WRITE,
                "Bool": {"s3:ObjectCreationOperation": "true"},
            },
        )
    )


class EtcdSnapshots(LogBucket):
    """The bucket of the cluster's etcd snapshots: KMS-encrypted, TLS-only, written once per key.

    A :class:`LogBucket` (its bucket keeps its construct id, so its logical id and its objects stay)
    whose policy refuses any object creation under ``prefix`` that could overwrite one (see
    :func:`write_once`). Nodes get the upload right with :meth:`grant_put_snapshots`; operators
    read through :class:`SnapshotRestoreAccess`.
    """

    prefix: str
    """The key prefix snapshots are written under, e.g. ``alchemy/etcd/``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        encryption_key: kms.IKey,
        server_access_logs_bucket: s3.IBucket | None = None,
        server_access_logs_prefix: str | None = None,
        expiration: Duration = DEFAULT_EXPIRATION,
    ) -> None:
        """
        :param prefix: key prefix of the snapshots, ending in ``/`` (e.g. ``alchemy/etcd/``).
        :param encryption_key: the KMS key the snapshots are encrypted with (SSE-KMS, bucket key on).
        :param server_access_logs_bucket: Default: no server access logging.
        :param server_access_logs_prefix: Default: the bucket's own prefix in the target bucket.
        :param expiration: Default: 90 days, then snapshots (and old versions) are deleted.
        """
        if not _PREFIX.match(prefix):
            raise ValueError(
                "prefix must be an S3 key prefix of letters, digits and !_.*'()- in /-separated parts, ending "
                f"in / (e.g. alchemy/etcd/); received {prefix!r}"
            )
        super().__init__(
            scope,
            construct_id,
            server_access_logs_bucket=server_access_logs_bucket,
            server_access_logs_prefix=server_access_logs_prefix,
            expiration=expiration,
            encryption_key=encryption_key,
        )
        self.prefix = prefix
        write_once(self.bucket, prefix)

    def grant_put_snapshots(self, grantee: iam.IGrantable) -> DependencyGroup:
        """Lets ``grantee`` create (only create, each key once) objects under :attr:`prefix`.

        ``kms:Decrypt`` is there because a multipart upload to an SSE-KMS bucket (the AWS CLI goes
        multipart above 8 MiB) decrypts the data key to complete it; both KMS actions are limited to
        requests S3 makes on the grantee's behalf, and the grantee may get no object, so it can
        decrypt none. Returns the policies that hold the permission.
        """
        objects = self.bucket.arn_for_objects(f"{self.prefix}*")
        statements = [
            iam.PolicyStatement(
                sid="PutSnapshotsOnlyIfNew",
                actions=["s3:PutObject"],
                resources=[objects],
                conditions={"StringEquals": CONDITIONAL_WRITE},
            ),
            iam.PolicyStatement(
                sid="UploadSnapshotParts",
                actions=["s3:PutObject"],
                resources=[objects],
                conditions={"Bool": {"s3:ObjectCreationOperation": "false"}},
            ),
        ]
        if self.bucket.encryption_key is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="EncryptSnapshotsThroughS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[self.bucket.encryption_key.key_arn],
                    conditions=via_s3(self),
                )
            )
        return grant_statements(
            grantee,
            statements,
            acknowledgments={
                f"AwsSolutions-IAM5[Resource::{nag_objects_name(self.bucket, f'{self.prefix}*')}]": (
                    "Snapshot objects are named by time and instance as they are taken; the wildcard covers only "
                    "the cluster's snapshot prefix, the only action is s3:PutObject, and only as a write-once put."
                )
            },
        )


class SnapshotRestoreAccess(Construct):
    """A role that operators of the account may assume to list and read the cluster's snapshots.

    Trusting the account (not a named user) leaves who may assume it to the account's own IAM:
    an operator needs ``sts:AssumeRole`` on this role in their own policy.
    """

    role: iam.Role
    """Assumed by an operator for the documented restore."""
    policy: iam.ManagedPolicy
    """Read-only access to the snapshot prefix (attachable to an operators' group instead)."""

    def __init__(self, scope: Construct, construct_id: str, *, snapshots: EtcdSnapshots) -> None:
        """
        :param snapshots: the snapshot bucket; the role reads only under its prefix.
        """
        super().__init__(scope, construct_id)
        bucket, prefix = snapshots.bucket, snapshots.prefix
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.AccountRootPrincipal(),
            description="Alchemy: an operator reads etcd snapshots to restore the cluster (OPERATIONS.md)",
        )
        statements = [
            iam.PolicyStatement(
                sid="ListSnapshots",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": f"{prefix}*"}},
            ),
            iam.PolicyStatement(
                sid="ReadSnapshots", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}*")]
            ),
        ]
        if bucket.encryption_key is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="DecryptSnapshotsThroughS3",
                    actions=["kms:Decrypt"],
                    resources=[bucket.encryption_key.key_arn],
                    conditions=via_s3(self),
                )
            )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            description="Alchemy: list and read the cluster's etcd snapshots, for a restore",
            statements=statements,
        )
        objects = nag_objects_name(bucket, f"{prefix}*")
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::{objects}]",
            "A restore picks one snapshot among those taken under the cluster's prefix, named by time and "
            "instance; the wildcard covers only that prefix, with read and list only, for an operator.",
        )
