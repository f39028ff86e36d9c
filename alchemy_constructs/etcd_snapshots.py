"""The etcd snapshot bucket's rules: every snapshot is written once, and read only for a restore.

Write-once is a bucket policy that refuses any object creation under the snapshot prefix that
does not carry ``If-None-Match: *`` (S3's conditional write: it fails with 412 when the key
exists). Object Lock was the other choice; it was not taken because in a versioned bucket it
does not stop an overwrite (a new version simply becomes current), it can only be turned on for
a new bucket (replacing the retained one), and its retention would fight the bucket's expiry.

Restoring runs on the nodes from an operator's Session Manager shell (README.md, "Restoring a
snapshot"): the operator assumes the restore role on their own machine, presigns the chosen
snapshot's URL, and the nodes download it with curl. The node role itself never reads a
snapshot, so a compromised node or container cannot read the cluster's history from S3.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from alchemy_constructs.acknowledge import acknowledge, nag_resource_name

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


def upload_statements(bucket: s3.IBucket, prefix: str) -> list[iam.PolicyStatement]:
    """What a node needs to upload a snapshot, and only the write-once way.

    ``kms:Decrypt`` is there because a multipart upload to an SSE-KMS bucket (the AWS CLI goes
    multipart above 8 MiB) decrypts the data key to complete it; both KMS actions are limited to
    requests S3 makes on the node's behalf, and the node may get no object, so it can decrypt none.
    """
    objects = bucket.arn_for_objects(f"{prefix}*")
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
    if bucket.encryption_key is not None:
        statements.append(
            iam.PolicyStatement(
                sid="EncryptSnapshotsThroughS3",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[bucket.encryption_key.key_arn],
                conditions=via_s3(bucket),
            )
        )
    return statements


class SnapshotRestoreAccess(Construct):
    """A role that operators of the account may assume to list and read the cluster's snapshots.

    Trusting the account (not a named user) leaves who may assume it to the account's own IAM:
    an operator needs ``sts:AssumeRole`` on this role in their own policy.
    """

    role: iam.Role
    """Assumed by an operator for the documented restore."""
    policy: iam.ManagedPolicy
    """Read-only access to the snapshot prefix (attachable to an operators' group instead)."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.AccountRootPrincipal(),
            description="Alchemy: an operator reads etcd snapshots to restore the cluster (README.md)",
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
        objects = nag_resource_name(Stack.of(self), bucket.arn_for_objects(f"{prefix}*"))
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::{objects}]",
            "A restore picks one snapshot among those taken under the cluster's prefix, named by time and "
            "instance; the wildcard covers only that prefix, with read and list only, for an operator.",
        )
