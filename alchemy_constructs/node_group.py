"""The Flatcar nodes that run etcd, RabbitMQ and the Alchemy services."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancing as elb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from alchemy_constructs.acknowledge import acknowledge

ROOT_DEVICE_NAME = "/dev/xvda"
"""Root device of Flatcar's EC2 images."""

CLUSTER_PORTS: tuple[tuple[int, str], ...] = (
    (2379, "etcd clients"),
    (2380, "etcd peers"),
    (4369, "RabbitMQ epmd peer discovery"),
    (5672, "AMQP between services and brokers"),
    (15672, "RabbitMQ management API and UI"),
    (25672, "RabbitMQ inter-node and CLI traffic"),
)
"""Ports that nodes open to each other, and only to each other."""

SSM_MANAGED_POLICY = "AmazonSSMManagedInstanceCore"

DEFAULT_HEALTH_CHECK_GRACE = Duration.minutes(5)
DEFAULT_READY_TIMEOUT = Duration.minutes(20)

DISCOVERY_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "ec2:DescribeInstances",
)
"""What etcd membership and RabbitMQ peer discovery read: the group's instances and their
addresses. AWS offers no resource-level scoping for these describe calls."""


@dataclass(frozen=True)
class NodeGroupProps:
    """What the node group is built from."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    machine_image: ec2.IMachineImage
    instance_type: ec2.InstanceType
    user_data: ec2.UserData
    load_balancer: elb.LoadBalancer
    desired_capacity: int = 3
    """Default: 3 nodes, as in the original design."""
    min_capacity: int | None = None
    """Default: ``desired_capacity``."""
    max_capacity: int | None = None
    """Default: ``desired_capacity``."""
    root_volume_gb: int = 50
    """Default: a 50 GiB encrypted gp3 root volume."""
    key_pair_name: str | None = None
    """Default: no key pair; reach nodes through Session Manager."""
    health_check_grace: Duration = DEFAULT_HEALTH_CHECK_GRACE
    """Default: 5 minutes after launch before ELB health counts (image pulls take time)."""
    metadata_hop_limit: int = 2
    """Default: 2, so containers (one network hop away) can reach IMDSv2."""
    ready_timeout: Duration = DEFAULT_READY_TIMEOUT
    """Default: 20 minutes for a new node to report its router ready before the deploy rolls back."""


class NodeGroup(Construct):
    """Auto Scaling group of Flatcar nodes behind the router load balancer.

    Nodes live in the private subnets, boot from a launch template that requires IMDSv2,
    have no inbound SSH (Session Manager instead), accept the router port only from the
    load balancer and the cluster ports only from each other, and are replaced one at a
    time when the launch template changes.
    """

    auto_scaling_group: autoscaling.AutoScalingGroup
    """The node group."""
    launch_template: ec2.LaunchTemplate
    """The nodes' launch template."""
    role: iam.Role
    """The nodes' instance role."""
    policy: iam.ManagedPolicy
    """The cluster's own permissions of the nodes: a managed policy, reviewable on its own
    (NIST 800-53 asks for no inline policies)."""
    security_group: ec2.SecurityGroup
    """The nodes' security group."""
    notifications_topic: sns.Topic
    """Scaling events (launch, terminate, failures) are published here."""

    def __init__(self, scope: Construct, construct_id: str, *, props: NodeGroupProps) -> None:
        super().__init__(scope, construct_id)
        desired = props.desired_capacity
        minimum = desired if props.min_capacity is None else props.min_capacity
        maximum = desired if props.max_capacity is None else props.max_capacity
        if not 1 <= minimum <= desired <= maximum:
            raise ValueError(
                f"node group capacity must satisfy 1 <= min <= desired <= max; received "
                f"min={minimum}, desired={desired}, max={maximum}"
            )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=props.vpc,
            description="Alchemy nodes: router port from the ELB, cluster ports from other nodes",
            allow_all_outbound=True,
        )
        for port, purpose in CLUSTER_PORTS:
            # An ingress rule only: egress is already open, and allow_internally would add
            # egress rules that CDK ignores (and warns about) on an allow-all-outbound group.
            self.security_group.add_ingress_rule(self.security_group, ec2.Port.tcp(port), purpose)

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Alchemy node: Session Manager access; cluster permissions are added by their features",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(SSM_MANAGED_POLICY)],
        )
        # A role that grows no inline policy: every permission goes into self.policy.
        self.policy = iam.ManagedPolicy(
            self, "Policy", roles=[self.role], description="Alchemy nodes: discovery, readiness, secrets, snapshots"
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{SSM_MANAGED_POLICY}]",
            (
                "AWS maintains this minimal Session Manager policy for the SSM agent; it replaces the "
                "original design's SSH access and tracks the agent's needs as they change."
            ),
        )

        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=props.machine_image,
            instance_type=props.instance_type,
            user_data=props.user_data,
            # Immutable here: the group would add its own signal permission inline; self.policy has it.
            role=self.role.without_policy_updates(),
            security_group=self.security_group,
            require_imdsv2=True,
            http_put_response_hop_limit=props.metadata_hop_limit,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            # Nodes read their stack and Auto Scaling group from their own tags.
            instance_metadata_tags=True,
            associate_public_ip_address=False,
            detailed_monitoring=True,
            key_pair=(
                ec2.KeyPair.from_key_pair_name(self, "KeyPair", props.key_pair_name)
                if props.key_pair_name is not None
                else None
            ),
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE_NAME,
                    volume=ec2.BlockDeviceVolume.ebs(
                        props.root_volume_gb,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

        self.notifications_topic = self._notifications_topic()

        self.auto_scaling_group = autoscaling.AutoScalingGroup(
            self,
            "Resource",
            vpc=props.vpc,
            vpc_subnets=props.subnets,
            launch_template=self.launch_template,
            desired_capacity=desired,
            min_capacity=minimum,
            max_capacity=maximum,
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=props.health_check_grace,
            ),
            # Creation and every rolling update wait for each new node to report its router
            # ready; a node that does not (in time) fails the deploy, which rolls back.
            signals=autoscaling.Signals.wait_for_all(timeout=props.ready_timeout),
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1,
                min_instances_in_service=max(minimum - 1, 0),
                wait_on_resource_signals=True,
            ),
            notifications=[autoscaling.NotificationConfiguration(topic=self.notifications_topic)],
        )
        acknowledge(
            self.auto_scaling_group,
            "Annotation::@aws-cdk/aws-autoscaling:desiredCapacitySet",
            "The desired capacity is the cluster size setting (node_count): a deploy that resets it "
            "to that value is intended, and no scaling policy changes it in between.",
        )
        props.load_balancer.add_target(self.auto_scaling_group)
        self._allow_cluster_discovery_and_signals()

    @property
    def connections(self) -> ec2.Connections:
        return self.security_group.connections

    def allow(self, *statements: iam.PolicyStatement) -> None:
        """Adds permissions to the nodes' managed policy."""
        self.policy.add_statements(*statements)

    def allow_snapshot_uploads(self, bucket: s3.IBucket, prefix: str) -> None:
        """Lets nodes put (only put) objects under ``prefix`` of ``bucket``: etcd snapshots."""
        objects = bucket.arn_for_objects(f"{prefix}*")
        self.allow(iam.PolicyStatement(actions=["s3:PutObject"], resources=[objects]))
        if bucket.encryption_key is not None:
            self.allow(iam.PolicyStatement(actions=["kms:GenerateDataKey"], resources=[bucket.encryption_key.key_arn]))
        resource = Stack.of(self).resolve(objects)
        # cdk-nag names the finding after the resource as it reads in the template.
        bucket_arn = resource["Fn::Join"][1][0]["Fn::GetAtt"][0]
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::<{bucket_arn}.Arn>/{prefix}*]",
            "Snapshot objects are named by time and instance as they are taken; the wildcard covers only "
            "the cluster's snapshot prefix, and the only action is s3:PutObject.",
        )

    def _allow_cluster_discovery_and_signals(self) -> None:
        self.allow(
            iam.PolicyStatement(actions=list(DISCOVERY_ACTIONS), resources=["*"]),
            iam.PolicyStatement(actions=["cloudformation:SignalResource"], resources=[Stack.of(self).stack_id]),
        )
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only the Auto Scaling and EC2 describe calls have Resource *: AWS offers no resource-level "
            "permissions for them, and nodes need them to find their group's instances for etcd "
            "membership and RabbitMQ peer discovery.",
        )

    def _notifications_topic(self) -> sns.Topic:
        """An encrypted, TLS-only topic that Auto Scaling may publish to.

        The AWS-managed ``aws/sns`` key lets any principal of the account that may publish
        (here Auto Scaling's service-linked role) encrypt through SNS; a customer key would
        have to name that role, which does not exist in an account that never scaled.
        """
        return sns.Topic(
            self,
            "Notifications",
            display_name="Alchemy node scaling events",
            master_key=kms.Alias.from_alias_name(self, "NotificationsKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
