"""The Alchemy platform: network, router load balancer and node group, wired together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    Aws,
    CfnOutput,
    CfnResource,
    CfnTag,
    Duration,
    Fn,
    IStableStringProducer,
    Lazy,
    Stack,
    TagManager,
    Tags,
    Token,
)
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from alchemy_constructs.cluster_secrets import ClusterSecrets
from alchemy_constructs.deploy_values import DeployValues
from alchemy_constructs.etcd_snapshots import EtcdSnapshots, SnapshotRestoreAccess
from alchemy_constructs.log_bucket import LogBucket
from alchemy_constructs.nat_image import NatImage
from alchemy_constructs.network import Network
from alchemy_constructs.node_bootstrap import (
    BundleLocation,
    DeployValuesLocation,
    NodeBootstrap,
    NodeSecrets,
    RepositoryImage,
    repository_images,
)
from alchemy_constructs.node_bundle import NodeBundle, compressed_archive
from alchemy_constructs.node_group import DEFAULT_READY_TIMEOUT, LIFECYCLE_HOOK_NAME, READY_BOOT_MARGIN, NodeGroup
from alchemy_constructs.node_image import NodeImage
from alchemy_constructs.router_load_balancer import ROUTER_HEALTH_PATH, ROUTER_PORT, RouterLoadBalancer
from alchemy_constructs.service_images import ServiceImages
from alchemy_stack.settings import Settings, SettingsError

READY_TIMEOUT = DEFAULT_READY_TIMEOUT
"""How long CloudFormation waits for each new node's ready signal."""

FLOW_LOG_RETENTION = {30: logs.RetentionDays.ONE_MONTH, 400: logs.RetentionDays.THIRTEEN_MONTHS}
"""CloudWatch Logs takes only some retention periods: these match the settings' choices."""

CLUSTER_TAG = "Cluster"
"""Every resource that takes tags carries ``Cluster=<cluster_name>``: cost reports and IAM
conditions can then tell several clusters in one account apart."""

RAW_TAGGABLE_TYPES = ("AWS::IAM::Role", "AWS::Lambda::Function")
"""Types that take tags but that CDK's custom-resource providers declare as plain
``CfnResource``s, which ``Tags.of`` does not reach."""

SERVICES_DIRECTORY = Path(__file__).resolve().parent.parent / "services"
"""The platform's systemd units, rendered into every node's cloud-config."""

SERVICE_IMAGES_DIRECTORY = Path(__file__).resolve().parent.parent / "alchemy_services"
"""Build context of the router and hello_world images (its Dockerfile has a target for each)."""


@jsii.implements(IStableStringProducer)
class _LogicalIdOf:
    """The node group's logical id, produced at synth: the user data is built before the group."""

    def __init__(self, stack: Stack, group: Callable[[], NodeGroup]) -> None:
        self._stack = stack
        self._group = group

    def produce(self) -> str:
        return str(self._stack.resolve(self._group().logical_id))


class AlchemyStack(Stack):
    """Everything one Alchemy cluster needs; it wires constructs and owns the outputs."""

    network: Network
    router_load_balancer: RouterLoadBalancer
    node_group: NodeGroup
    node_image: NodeImage
    nat_image: NatImage
    secrets: ClusterSecrets
    etcd_snapshots: EtcdSnapshots
    snapshot_restore: SnapshotRestoreAccess
    service_images: ServiceImages

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add(CLUSTER_TAG, settings.cluster_name)
        if settings.is_production:
            self.termination_protection = True
        retention = Duration.days(settings.log_retention_days)

        self.nat_image = NatImage(self, "NatImage")
        self.network = Network(
            self,
            "Network",
            cidr=settings.vpc_cidr,
            availability_zones=self._availability_zones(settings.az_count),
            nat_instance_type=ec2.InstanceType(settings.nat_instance_type),
            nat_machine_image=self.nat_image.machine_image,
            nat_per_az=settings.nat_per_az,
            flow_log_retention=FLOW_LOG_RETENTION[settings.log_retention_days],
        )

        server_access_logs = LogBucket(self, "ServerAccessLogs")
        access_logs = LogBucket(
            self,
            "AccessLogs",
            server_access_logs_bucket=server_access_logs.bucket,
            server_access_logs_prefix="access-logs-bucket/",
            expiration=retention,
        )
        self.router_load_balancer = RouterLoadBalancer(
            self,
            "RouterLoadBalancer",
            vpc=self.network.vpc,
            subnets=self.network.load_balancer_subnets,
            access_log_bucket=access_logs.bucket,
            certificate_arn=settings.certificate_arn,
            tls_policy=settings.tls_policy,
            router_port=ROUTER_PORT,
            health_check_path=ROUTER_HEALTH_PATH,
            plain_http=settings.plain_http,
            ingress_cidrs=settings.ingress_cidrs,
        )

        self.node_image = NodeImage(
            self,
            "NodeImage",
            channel=settings.node_image_channel,
            image_id=settings.node_image_id,
        )
        self.secrets = ClusterSecrets(self, "Secrets")
        self.etcd_snapshots = EtcdSnapshots(
            self,
            "EtcdSnapshots",
            prefix=f"{settings.cluster_name}/etcd/",
            server_access_logs_bucket=server_access_logs.bucket,
            server_access_logs_prefix="etcd-snapshots-bucket/",
            expiration=retention,
            encryption_key=kms.Key(
                self, "EtcdSnapshotsKey", description="Encrypts the cluster's etcd snapshots", enable_key_rotation=True
            ),
        )
        unset_images = {"router_image": settings.router_image, "hello_world_image": settings.hello_world_image}
        self.service_images = ServiceImages(
            self,
            "ServiceImages",
            directory=SERVICE_IMAGES_DIRECTORY,
            wanted=tuple(name for name, image in unset_images.items() if image is None),
        )
        images: dict[str, str | RepositoryImage] = {
            **{name: image for name, image in unset_images.items() if image is not None},
            **repository_images(self.service_images.assets),
        }
        bootstrap = NodeBootstrap(
            region=self.region,
            cluster_name=settings.cluster_name,
            services_directory=SERVICES_DIRECTORY,
            secrets=NodeSecrets(
                rabbitmq_cookie_arn=self.secrets.rabbitmq_cookie.secret_arn,
                rabbitmq_admin_password_arn=self.secrets.rabbitmq_admin_password.secret_arn,
                rabbitmq_service_password_arns={
                    service: secret.secret_arn for service, secret in self.secrets.rabbitmq_service_passwords.items()
                },
                etcd_root_password_arn=self.secrets.etcd_root_password.secret_arn,
            ),
            etcd_snapshot_bucket=self.etcd_snapshots.bucket.bucket_name,
            etcd_snapshot_prefix=self.etcd_snapshots.prefix,
            etcd_discovery_url=settings.etcd_discovery_url,
            cluster_size_hint=settings.node_count,
            images=images,
            instances={"hello_world": settings.hello_world_instances},
            stack_name=Aws.STACK_NAME,
            node_group_logical_id=Lazy.string(_LogicalIdOf(self, lambda: self.node_group)),
            lifecycle_hook_name=LIFECYCLE_HOOK_NAME,
            router_port=ROUTER_PORT,
            router_timeout_seconds=settings.router_timeout_seconds,
            ready_timeout_seconds=int(READY_TIMEOUT.to_seconds() - READY_BOOT_MARGIN.to_seconds()),
        )
        node_bundle = NodeBundle(self, "NodeBundle", archive=compressed_archive(bootstrap.bundle_archive()))
        deploy_values = DeployValues(
            self, "DeployValues", values=bootstrap.deploy_values(), growing_entry="RABBITMQ_SERVICE_SECRETS"
        )
        user_data = bootstrap.cloud_config(
            bundle=BundleLocation(url=node_bundle.url, sha256=node_bundle.sha256),
            deploy_values=DeployValuesLocation(
                parameter_name=deploy_values.parameter_name, digest=deploy_values.digest
            ),
        )
        self.node_group = NodeGroup(
            self,
            "NodeGroup",
            vpc=self.network.vpc,
            vpc_subnets=self.network.node_subnets,
            machine_image=self.node_image.machine_image,
            instance_type=ec2.InstanceType(settings.node_instance_type),
            user_data=ec2.UserData.custom(user_data.render()),
            desired_capacity=settings.node_count,
            min_capacity=settings.min_nodes,
            max_capacity=settings.max_nodes,
            root_volume_gb=settings.node_volume_gb,
            key_pair_name=settings.key_pair_name,
            ready_timeout=READY_TIMEOUT,
        )
        self.router_load_balancer.add_target(self.node_group.auto_scaling_group)
        nodes = self.node_group.auto_scaling_group.node
        # A node's first boot reads its secrets, deploy values and bundle, pulls images through the NAT and uploads
        # snapshots: the group waits for each of those rights, the NAT instances and the private
        # subnets' default routes to them.
        nodes.add_dependency(
            self.secrets.grant_read(self.node_group),
            node_bundle.grant_read(self.node_group),
            deploy_values.grant_read(self.node_group),
            self.service_images.grant_pull(self.node_group),
            self.etcd_snapshots.grant_put_snapshots(self.node_group),
            *self.network.nat_instances,
            *(subnet.internet_connectivity_established for subnet in self.network.vpc.private_subnets),
        )
        self.snapshot_restore = SnapshotRestoreAccess(self, "EtcdSnapshotRestore", snapshots=self.etcd_snapshots)
        Tags.of(self.node_group.auto_scaling_group).add("Name", f"{settings.cluster_name}-node")
        for nat_instance in self.network.nat_instances:
            Tags.of(nat_instance).add("Name", f"{settings.cluster_name}-nat")
        self._tag_what_tags_of_misses(settings.cluster_name)
        self._outputs()

    def _tag_what_tags_of_misses(self, cluster_name: str) -> None:
        """Tags the resources ``Tags.of`` cannot: CDK's custom-resource providers (e.g. the one that
        empties the default security group) and the NAT instances' launch templates."""
        tag = CfnTag(key=CLUSTER_TAG, value=cluster_name)
        for construct in self.node.find_all():
            if isinstance(construct, ec2.CfnLaunchTemplate) and construct.tag_specifications is None:
                construct.tag_specifications = [
                    ec2.CfnLaunchTemplate.LaunchTemplateTagSpecificationProperty(
                        resource_type="launch-template", tags=[tag]
                    )
                ]
            elif (
                isinstance(construct, CfnResource)
                and construct.cfn_resource_type in RAW_TAGGABLE_TYPES
                and not TagManager.is_taggable(construct)
            ):
                construct.add_property_override("Tags", [{"Key": CLUSTER_TAG, "Value": cluster_name}])

    def _availability_zones(self, count: int) -> list[str]:
        """``count`` AZs of the target region, checked against the region when it is known.

        An environment-agnostic stack picks them at deploy time with ``Fn::GetAZs``; CDK's
        own default would stop at two there.
        """
        if Token.is_unresolved(self.account) or Token.is_unresolved(self.region):
            return [Fn.select(index, Fn.get_azs()) for index in range(count)]
        zones = self.availability_zones
        # Before the CLI has looked the zones up, CDK answers with placeholders; the
        # CLI then synthesizes again with the real list.
        if not any(zone.startswith("dummy") for zone in zones) and count > len(zones):
            raise SettingsError(
                "az_count",
                count,
                f"must be from 2 to {len(zones)}, the AZs region {self.region} has",
            )
        return list(zones[:count])

    def _outputs(self) -> None:
        CfnOutput(
            self,
            "ELBURL",
            value=self.router_load_balancer.url,
            description="Public URL of the Alchemy routers, e.g. ELBURL/v1/hello",
        )
        for index, eip in enumerate(self.network.nat_elastic_ips, start=1):
            CfnOutput(
                self,
                f"NATIPAddress{index}" if index > 1 else "NATIPAddress",
                value=eip.attr_public_ip,
                description="Public address the private subnets reach the internet from (allow-list it upstream)",
            )
        CfnOutput(
            self,
            "EtcdSnapshotRestoreRoleArn",
            value=self.snapshot_restore.role.role_arn,
            description="Role an operator assumes to list and presign etcd snapshots for a restore (OPERATIONS.md)",
        )
        asg_name = self.node_group.auto_scaling_group.auto_scaling_group_name
        CfnOutput(
            self,
            "NodeGroupName",
            value=asg_name,
            description="Name of the nodes' Auto Scaling group",
        )
        CfnOutput(
            self,
            "NodeShellCommand",
            value=(
                f"aws ssm start-session --region {self.region} --target "
                f"$(aws autoscaling describe-auto-scaling-groups --region {self.region} "
                f"--auto-scaling-group-names {asg_name} "
                "--query 'AutoScalingGroups[0].Instances[0].InstanceId' --output text)"
            ),
            description="Opens a Session Manager shell on a node (needs the session-manager-plugin)",
        )
