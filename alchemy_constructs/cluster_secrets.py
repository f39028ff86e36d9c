"""The cluster's generated secrets: RabbitMQ's Erlang cookie, its admin password, one broker
password per service, and the password of etcd's root user."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, DependencyGroup

from alchemy_constructs.acknowledge import acknowledge
from alchemy_constructs.grants import grant_statements

SERVICES = ("router", "hello_world")
"""Services that connect to RabbitMQ as their own least-privilege user (named after the service;
its vhost permissions are in :mod:`alchemy_constructs.rabbitmq_config`)."""

ROTATION_REASON = (
    "Rotating the Erlang cookie or the broker's admin password means restarting every broker "
    "together (nodes with different cookies cannot cluster); rotate by replacing the secret and "
    "rolling the node group, as OPERATIONS.md describes."
)
USER_ROTATION_REASON = (
    "The nodes set this password on the broker's or etcd's user when they start it; a rotated value "
    "takes effect only when the node group rolls, so rotation is replacing the secret and rolling the "
    "group (OPERATIONS.md), not an automatic rotation that would leave running nodes with a stale password."
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
    """Password of the broker's administrator: the node scripts' user, never a service's."""
    rabbitmq_service_passwords: dict[str, secretsmanager.Secret]
    """Broker password of each service's own user, by service name."""
    etcd_root_password: secretsmanager.Secret
    """Password of etcd's ``root`` user: only the node scripts authenticate to etcd."""
    key: kms.Key
    """The customer managed key every secret here is encrypted with (rotated yearly by KMS)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", description="Encrypts the Alchemy cluster's secrets", enable_key_rotation=True)
        self.rabbitmq_cookie = self._generated(
            "RabbitMqErlangCookie", "Erlang cookie of the Alchemy RabbitMQ cluster", length=48
        )
        # Alphanumeric only, like every secret here: broker passwords are embedded in amqp:// URIs.
        self.rabbitmq_admin_password = self._generated(
            "RabbitMqAdminPassword", "Password of the Alchemy RabbitMQ administrator", length=32
        )
        self.rabbitmq_service_passwords = {
            service: self._generated(
                f"RabbitMq{_camel(service)}Password",
                f"Password of the Alchemy RabbitMQ user of the {service} service",
                length=32,
                rotation_reason=USER_ROTATION_REASON,
            )
            for service in SERVICES
        }
        self.etcd_root_password = self._generated(
            "EtcdRootPassword",
            "Password of the root user of the Alchemy cluster's etcd",
            length=32,
            rotation_reason=USER_ROTATION_REASON,
        )

    @property
    def all(self) -> list[secretsmanager.Secret]:
        """Every secret of the cluster."""
        return [
            self.rabbitmq_cookie,
            self.rabbitmq_admin_password,
            *self.rabbitmq_service_passwords.values(),
            self.etcd_root_password,
        ]

    def grant_read(self, grantee: iam.IGrantable) -> DependencyGroup:
        """Lets ``grantee`` read every secret of the cluster, and decrypt them only through Secrets Manager.

        Returns the policies that hold the permission (a node's first boot needs it).
        """
        region = Stack.of(self).region
        return grant_statements(
            grantee,
            [
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    resources=[secret.secret_arn for secret in self.all],
                ),
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[self.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
                ),
            ],
        )

    def _generated(
        self, construct_id: str, description: str, *, length: int, rotation_reason: str = ROTATION_REASON
    ) -> secretsmanager.Secret:
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
        acknowledge(secret, "AwsSolutions-SMG4", rotation_reason)
        acknowledge(secret, "NIST.800.53.R5-SecretsManagerRotationEnabled", rotation_reason)
        return secret


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
