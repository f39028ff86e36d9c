"""The cluster's generated secrets: RabbitMQ's Erlang cookie and admin password."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
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

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.rabbitmq_cookie = self._generated(
            "RabbitMqErlangCookie", "Erlang cookie of the Alchemy RabbitMQ cluster", length=48
        )
        # Alphanumeric only: the password is embedded in the services' amqp:// URIs.
        self.rabbitmq_admin_password = self._generated(
            "RabbitMqAdminPassword", "Password of the Alchemy RabbitMQ administrator", length=32
        )

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """Lets ``grantee`` read both secrets (and nothing else in Secrets Manager)."""
        self.rabbitmq_cookie.grant_read(grantee)
        self.rabbitmq_admin_password.grant_read(grantee)

    def _generated(self, construct_id: str, description: str, *, length: int) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=length, exclude_punctuation=True, include_space=False
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(secret, "AwsSolutions-SMG4", ROTATION_REASON)
        return secret
