"""The cluster's generated secrets: RabbitMQ's Erlang cookie and admin password."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from alchemy_constructs.acknowledge import acknowledge

ROTATION_REASON = (
    "Rotating the Erlang cookie or the broker's admin password means restarting every broker "
    "together (nodes with different cookies cannot cluster); rotate by replacing the secret and "
    "rolling the node group, as README.md describes."
)


class ClusterSecrets(Construct):
    """Secrets that Secrets Manager generates at deploy time; their values never pass through CDK.

    The original platform kept a fixed cookie and password in a unit file. Here they are
    random per cluster, stored encrypted, and readable only by the node role they are
    granted to.
    """

    rabbitmq_cookie: secretsmanager.Secret
    """RabbitMQ's Erlang cookie: 48 alphanumerics, shared by every broker of the cluster."""
    rabbitmq_admin_password: secretsmanager.Secret
    """Password of the broker's administrator, which the services also connect as."""
    key: kms.Key
    """The customer managed key both secrets are encrypted with (rotated yearly by KMS)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", description="Encrypts the Alchemy cluster's secrets", enable_key_rotation=True)
        self.rabbitmq_cookie = self._generated(
            "RabbitMqErlangCookie", "Erlang cookie of the Alchemy RabbitMQ cluster", length=48
        )
        # Alphanumeric only: the password is embedded in the services' amqp:// URIs.
        self.rabbitmq_admin_password = self._generated(
            "RabbitMqAdminPassword", "Password of the Alchemy RabbitMQ administrator", length=32
        )

    def read_statements(self) -> list[iam.PolicyStatement]:
        """What reading both secrets takes, and nothing more: for a managed policy to carry."""
        region = Stack.of(self).region
        return [
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                resources=[self.rabbitmq_cookie.secret_arn, self.rabbitmq_admin_password.secret_arn],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            ),
        ]

    def _generated(self, construct_id: str, description: str, *, length: int) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=length, exclude_punctuation=True, include_space=False
            ),
            encryption_key=self.key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(secret, "AwsSolutions-SMG4", ROTATION_REASON)
        acknowledge(secret, "NIST.800.53.R5-SecretsManagerRotationEnabled", ROTATION_REASON)
        return secret
