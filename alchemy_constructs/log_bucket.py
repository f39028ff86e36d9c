"""An S3 bucket for logs and backups: private, encrypted, TLS-only, versioned, with expiry."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from alchemy_constructs.acknowledge import acknowledge

DEFAULT_EXPIRATION = Duration.days(90)
DAY_SECONDS = 86400


class LogBucket(Construct):
    """A bucket that only AWS services and the stack's own roles write to, over TLS.

    Encryption defaults to SSE-S3 because ELB access-log delivery and S3 server access
    logging support no other kind; a bucket for backups takes a KMS key instead.
    """

    bucket: s3.Bucket
    """The bucket."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        server_access_logs_bucket: s3.IBucket | None = None,
        server_access_logs_prefix: str | None = None,
        expiration: Duration = DEFAULT_EXPIRATION,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """
        :param server_access_logs_bucket: Default: no server access logging (use this for the
            bucket that receives other buckets' server access logs, which cannot log to itself).
        :param server_access_logs_prefix: Default: the bucket's own prefix in the target bucket.
        :param expiration: Default: 90 days, then log objects (and old versions) are deleted.
        :param removal_policy: Default: retain the bucket and its logs when the stack is deleted.
        :param encryption_key: Default: SSE-S3; with a key, SSE-KMS with an S3 bucket key.
        """
        super().__init__(scope, construct_id)
        if server_access_logs_prefix is not None and server_access_logs_bucket is None:
            raise ValueError(
                "server_access_logs_prefix needs server_access_logs_bucket (the bucket the prefix is in); "
                f"received a prefix {server_access_logs_prefix!r} and no bucket"
            )
        seconds = expiration.to_seconds()
        if seconds < DAY_SECONDS or seconds % DAY_SECONDS:
            raise ValueError(
                "expiration must be a whole number of days, at least 1 (S3 lifecycle rules count days); "
                f"received {expiration.to_human_string()}"
            )
        self.bucket = s3.Bucket(
            self,
            "Resource",
            encryption=s3.BucketEncryption.S3_MANAGED if encryption_key is None else s3.BucketEncryption.KMS,
            encryption_key=encryption_key,
            bucket_key_enabled=encryption_key is not None or None,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=server_access_logs_bucket,
            server_access_logs_prefix=server_access_logs_prefix,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=expiration,
                    noncurrent_version_expiration=Duration.days(7),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal_policy,
        )
        acknowledge(
            self.bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "Replication needs a bucket in a second region, outside this single-region stack; versioning, "
            "retention and the retain-on-delete policy protect the objects in this region.",
        )
        if encryption_key is None:
            acknowledge(
                self.bucket,
                "NIST.800.53.R5-S3DefaultEncryptionKMS",
                "ELB access-log delivery and S3 server access logging write only to SSE-S3 buckets; this "
                "bucket receives one of them, so it cannot use a KMS key.",
            )
