"""The Flatcar nodes that run etcd, RabbitMQ and the Alchemy services."""

from __future__ import annotations

import jsii
from aws_cdk import ArnFormat, Aws, CfnResource, Duration, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from alchemy_constructs.acknowledge import acknowledge, nag_arn_name

ROOT_DEVICE_NAME = "/dev/xvda"
"""Root device of Flatcar's EC2 images."""

CLUSTER_PORTS: tuple[tuple[int, str], ...] = (
    (2379, "etcd clients"),
    (2380, "etcd peers"),
    (4369, "RabbitMQ epmd peer discovery"),
    (5672, "AMQP between services and brokers"),
    (25672, "RabbitMQ inter-node and CLI traffic"),
)
"""Ports that nodes open to each other, and only to each other. The management API (15672) is
not among them: it listens on 127.0.0.1 and is reached through Session Manager port forwarding."""

SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
"""What the SSM agent needs for Session Manager and nothing else: registering the instance and
opening its channels (AWS documents exactly these for a custom Session Manager instance profile;
S3 or KMS actions only join them when session logs go to S3 or sessions use a KMS key, which
this platform does not configure). AmazonSSMManagedInstanceCore would add ssm:GetParameter(s) on
every parameter of the account, documents, associations, inventory and ec2messages."""

LIFECYCLE_HOOK_NAME = "alchemy-node-leave"
"""The termination hook that holds an instance while it leaves etcd and RabbitMQ: a literal,
so the user data can name it without referring to the group (that would be a cycle)."""
LIFECYCLE_HEARTBEAT = Duration.minutes(5)
"""How long a terminating node has to leave before Auto Scaling continues without it."""

DEFAULT_HEALTH_CHECK_GRACE = Duration.minutes(5)
DEFAULT_READY_TIMEOUT = Duration.minutes(20)
MAX_READY_TIMEOUT = Duration.hours(12)
"""The longest a CloudFormation creation policy waits for signals."""
ROOT_VOLUME_GB_RANGE = (8, 16384)
"""gp3's range from the Flatcar image's own 8 GiB."""
READY_BOOT_MARGIN = Duration.minutes(5)
"""Of the ready timeout, what booting takes before the readiness check starts (image pulls,
secrets, etcd membership): the node must give up and signal FAILURE before CloudFormation
stops waiting, so its own deadline is the ready timeout minus this margin."""

GROUPS_RESOURCE_NAME = "*:autoScalingGroupName/*"
"""Every Auto Scaling group of the account and region, by ARN (the policy narrows them by tag)."""

DISCOVERY_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "ec2:DescribeInstances",
)
"""What etcd membership and RabbitMQ peer discovery read: the group's instances and their
addresses. AWS offers no resource-level scoping for these describe calls."""


class _ManagedPolicyRole(iam.Role):
    """A role whose granted permissions go into one managed policy instead of an inline one.

    CDK's ``Role`` puts what ``grant_*`` methods add into an inline ``DefaultPolicy``, which
    NIST 800-53 rejects (no inline policies) and which no reviewer finds in one place.
    """

    def __init__(self, scope: Construct, construct_id: str, *, assumed_by: iam.IPrincipal, description: str) -> None:
        super().__init__(scope, construct_id, assumed_by=assumed_by, description=description)
        self.grants_policy: iam.ManagedPolicy | None = None

    def add_to_principal_policy(self, statement: iam.PolicyStatement) -> iam.AddToPrincipalPolicyResult:
        if self.grants_policy is None:
            return super().add_to_principal_policy(statement)
        self.grants_policy.add_statements(statement)
        return iam.AddToPrincipalPolicyResult(statement_added=True, policy_dependable=self.grants_policy)


@jsii.implements(iam.IGrantable)
class NodeGroup(Construct):
    """Auto Scaling group of Flatcar nodes, for the router load balancer to register.

    Nodes live in the given (private) subnets, boot from a launch template that requires IMDSv2,
    have no inbound SSH (Session Manager instead), accept the cluster ports only from each other,
    and are replaced one at a time when the launch template changes. The group is a grantee
    (``iam.IGrantable``): ``secrets.grant_read(node_group)`` puts the permission into the nodes'
    managed policy. Registering with a load balancer and waiting for other resources is the
    stack's wiring (``load_balancer.add_target(node_group.auto_scaling_group)``,
    ``node_group.auto_scaling_group.node.add_dependency(...)``), which opens the router port
    from the load balancer only.
    """

    auto_scaling_group: autoscaling.AutoScalingGroup
    """The node group."""
    launch_template: ec2.LaunchTemplate
    """The nodes' launch template."""
    role: iam.Role
    """The nodes' instance role."""
    policy: iam.ManagedPolicy
    """The cluster's own permissions of the nodes, and everything granted to the group: a managed
    policy, reviewable on its own (NIST 800-53 asks for no inline policies)."""
    session_manager_policy: iam.ManagedPolicy
    """Session Manager's channel actions for the SSM agent, and nothing more."""
    lifecycle_hook: autoscaling.LifecycleHook
    """The termination hook that each node completes after leaving etcd and RabbitMQ."""
    security_group: ec2.SecurityGroup
    """The nodes' security group."""
    notifications_topic: sns.Topic
    """Scaling events (launch, terminate, failures) are published here."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        machine_image: ec2.IMachineImage,
        instance_type: ec2.InstanceType,
        user_data: ec2.UserData,
        vpc_subnets: ec2.SubnetSelection | None = None,
        desired_capacity: int = 3,
        min_capacity: int | None = None,
        max_capacity: int | None = None,
        root_volume_gb: int = 50,
        key_pair_name: str | None = None,
        health_check_grace: Duration = DEFAULT_HEALTH_CHECK_GRACE,
        metadata_hop_limit: int = 1,
        ready_timeout: Duration = DEFAULT_READY_TIMEOUT,
    ) -> None:
        """
        :param vpc: VPC of the nodes.
        :param machine_image: the Flatcar image the nodes boot.
        :param instance_type: instance type of the nodes.
        :param user_data: the nodes' cloud-config.
        :param vpc_subnets: Default: the VPC's private subnets (CDK's default for a group).
        :param desired_capacity: Default: 3 nodes, as in the original design.
        :param min_capacity: Default: ``desired_capacity``.
        :param max_capacity: Default: ``desired_capacity``.
        :param root_volume_gb: Default: a 50 GiB encrypted gp3 root volume; from 8 to 16384.
        :param key_pair_name: Default: no key pair; reach nodes through Session Manager.
        :param health_check_grace: Default: 5 minutes after launch before health checks count
            (image pulls take time).
        :param metadata_hop_limit: Default: 1, so only the host's own network namespace (the node
            scripts and the host-network containers they run) reaches IMDSv2; the bridge-networked
            service containers cannot get a token, and so never the node role's credentials.
        :param ready_timeout: Default: 20 minutes for a new node to report its router ready before
            the deploy rolls back; more than the boot margin (5 minutes), at most 12 hours.
        """
        super().__init__(scope, construct_id)
        minimum = desired_capacity if min_capacity is None else min_capacity
        maximum = desired_capacity if max_capacity is None else max_capacity
        if not 1 <= minimum <= desired_capacity <= maximum:
            raise ValueError(
                f"node group capacity must satisfy 1 <= min <= desired <= max; received "
                f"min={minimum}, desired={desired_capacity}, max={maximum}"
            )
        low, high = ROOT_VOLUME_GB_RANGE
        if not low <= root_volume_gb <= high:
            raise ValueError(f"root_volume_gb must be from {low} to {high} (GiB); received {root_volume_gb}")
        if not 1 <= metadata_hop_limit <= 64:
            raise ValueError(f"metadata_hop_limit must be from 1 to 64; received {metadata_hop_limit}")
        if key_pair_name is not None and not key_pair_name.strip():
            raise ValueError("key_pair_name must name a key pair, or be None for none; received an empty name")
        if not READY_BOOT_MARGIN.to_seconds() < ready_timeout.to_seconds() <= MAX_READY_TIMEOUT.to_seconds():
            raise ValueError(
                f"ready_timeout must be more than {READY_BOOT_MARGIN.to_human_string()} (the boot margin) and at "
                f"most {MAX_READY_TIMEOUT.to_human_string()}; received {ready_timeout.to_human_string()}"
            )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Alchemy nodes: router port from the ELB, cluster ports from other nodes",
            allow_all_outbound=True,
        )
        for port, purpose in CLUSTER_PORTS:
            # An ingress rule only: egress is already open, and allow_internally would add
            # egress rules that CDK ignores (and warns about) on an allow-all-outbound group.
            self.security_group.add_ingress_rule(self.security_group, ec2.Port.tcp(port), purpose)

        role = _ManagedPolicyRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Alchemy node: Session Manager access; cluster permissions are added by their features",
        )
        self.role = role
        # A role that grows no inline policy: every permission goes into a managed policy of the stack.
        self.policy = iam.ManagedPolicy(
            self, "Policy", roles=[self.role], description="Alchemy nodes: discovery, readiness, secrets, snapshots"
        )
        role.grants_policy = self.policy
        self.session_manager_policy = self._session_manager_policy()

        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=machine_image,
            instance_type=instance_type,
            user_data=user_data,
            # Immutable here: the group would add its own signal permission inline; self.policy has it.
            role=self.role.without_policy_updates(),
            security_group=self.security_group,
            require_imdsv2=True,
            http_put_response_hop_limit=metadata_hop_limit,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            # Nodes read their Auto Scaling group's name from their own tags (the user data cannot
            # name the group: that would be a cycle).
            instance_metadata_tags=True,
            associate_public_ip_address=False,
            detailed_monitoring=True,
            key_pair=(
                ec2.KeyPair.from_key_pair_name(self, "KeyPair", key_pair_name) if key_pair_name is not None else None
            ),
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE_NAME,
                    volume=ec2.BlockDeviceVolume.ebs(
                        root_volume_gb,
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
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            launch_template=self.launch_template,
            desired_capacity=desired_capacity,
            min_capacity=minimum,
            max_capacity=maximum,
            # EC2 status checks only: the ELB's health check follows the router's broker
            # connection, and a cluster-wide broker outage must not make the group replace every
            # node (losing etcd's quorum with them). The ELB still stops routing to such a node.
            health_checks=autoscaling.HealthChecks.ec2(grace_period=health_check_grace),
            # Creation and every rolling update wait for each new node to report its router
            # ready; a node that does not (in time) fails the deploy, which rolls back.
            signals=autoscaling.Signals.wait_for_all(timeout=ready_timeout),
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
        acknowledge(
            self.auto_scaling_group,
            "NIST.800.53.R5-AutoScalingGroupELBHealthCheckRequired",
            "The ELB health check follows each router's broker connection; a cluster-wide broker outage "
            "would make the group replace every node at once and lose etcd's quorum. EC2 status checks "
            "replace broken instances, and the ELB alone stops routing to a node whose router is unhealthy.",
        )
        # Nodes need their permissions from the first boot (secrets, signals); the policies never
        # refer to the group, so waiting for them is no cycle.
        self.auto_scaling_group.node.add_dependency(self.policy, self.session_manager_policy)
        self.lifecycle_hook = self.auto_scaling_group.add_lifecycle_hook(
            "Leave",
            lifecycle_hook_name=LIFECYCLE_HOOK_NAME,
            lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
            heartbeat_timeout=LIFECYCLE_HEARTBEAT,
            default_result=autoscaling.DefaultResult.CONTINUE,
        )
        self._allow_cluster_discovery_and_signals()
        self._allow_completing_the_lifecycle_hook()

    @property
    def grant_principal(self) -> iam.IPrincipal:
        """The nodes' role; what is granted to it lands in :attr:`policy`."""
        return self.role

    @property
    def connections(self) -> ec2.Connections:
        return self.security_group.connections

    @property
    def logical_id(self) -> str:
        """The group's logical id in the template: a literal once resolved (never a reference)."""
        resource = self.auto_scaling_group.node.default_child
        assert isinstance(resource, CfnResource)
        return str(resource.logical_id)

    def _session_manager_policy(self) -> iam.ManagedPolicy:
        policy = iam.ManagedPolicy(
            self,
            "SessionManagerPolicy",
            roles=[self.role],
            description="Alchemy nodes: the SSM agent's Session Manager channels, nothing else",
            statements=[iam.PolicyStatement(actions=list(SESSION_MANAGER_ACTIONS), resources=["*"])],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "The SSM agent's registration and Session Manager channel actions take no resource ARN that "
            "an instance profile can name in advance (the session and channel ids are made per session); "
            "these five actions are the whole statement, with no ssm:GetParameter or document access.",
        )
        return policy

    def _allow_cluster_discovery_and_signals(self) -> None:
        self.policy.add_statements(
            iam.PolicyStatement(actions=list(DISCOVERY_ACTIONS), resources=["*"]),
            # The tightest scope CloudFormation allows: this stack. SignalResource has no condition
            # key for the logical id or the unique id (the instance id), so a node could signal for
            # another instance of its own stack; it cannot signal for any other stack.
            iam.PolicyStatement(actions=["cloudformation:SignalResource"], resources=[Stack.of(self).stack_id]),
        )
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "The node group's own Resource * statement is the Auto Scaling and EC2 describe calls: AWS offers "
            "no resource-level permissions for them, and nodes need them to find their group's instances for "
            "etcd membership and RabbitMQ peer discovery. Grants to the group acknowledge their own.",
        )

    def _allow_completing_the_lifecycle_hook(self) -> None:
        """A node may complete lifecycle actions of its own group only.

        The group is named by its CloudFormation tags (this stack's id and the group's logical
        id, both known without referring to the group), not by its ARN: the group's creation
        waits for ready signals that need this policy, so the policy must not depend on the group.
        """
        stack = Stack.of(self)
        groups = stack.format_arn(
            service="autoscaling",
            resource="autoScalingGroup",
            resource_name=GROUPS_RESOURCE_NAME,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        nag_name = nag_arn_name(stack, service="autoscaling", resource=f"autoScalingGroup:{GROUPS_RESOURCE_NAME}")
        self.policy.add_statements(
            iam.PolicyStatement(
                actions=["autoscaling:CompleteLifecycleAction"],
                resources=[groups],
                conditions={
                    "StringEquals": {
                        "autoscaling:ResourceTag/aws:cloudformation:stack-id": Aws.STACK_ID,
                        "autoscaling:ResourceTag/aws:cloudformation:logical-id": self.logical_id,
                    }
                },
            )
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::{nag_name}]",
            "CompleteLifecycleAction is limited to this node group by a condition on its CloudFormation "
            "tags (stack id and logical id); naming the group's ARN would make the policy depend on the "
            "group, whose creation waits for signals that need the policy.",
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
