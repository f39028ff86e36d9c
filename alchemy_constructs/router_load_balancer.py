"""The public entry point: a classic ELB in front of the Alchemy routers."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from aws_cdk import Aws, CfnCondition, CfnMapping, Duration, Fn, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancing as elb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.region_info import FactName, RegionInfo
from constructs import Construct

from alchemy_constructs.acknowledge import acknowledge

ROUTER_PORT = 8080
"""Port the Alchemy router listens on, on every node."""

ROUTER_HEALTH_PATH = "/_alchemy/health"
"""The router's health endpoint: 200 while its broker connection is up, 503 otherwise."""

TLS_1_2_POLICIES = ("ELBSecurityPolicy-TLS-1-2-2017-01",)
"""The classic ELB's predefined security policies that allow TLS 1.2 only (no TLS 1.0 or 1.1).

From AWS's table "Predefined SSL security policies for Classic Load Balancers": the others
(``ELBSecurityPolicy-2016-08``, the default; ``-TLS-1-1-2017-01``; ``-2015-05`` and older)
still accept TLS 1.1 or 1.0. A classic ELB offers no TLS 1.3 policy.
"""

DEFAULT_TLS_POLICY = TLS_1_2_POLICIES[0]

ACCESS_LOG_PREFIX = "elb"
ELB_LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"
DEFAULT_DRAINING_TIMEOUT = Duration.seconds(60)
MAX_DRAINING_SECONDS = 3600
NO_ELB_ACCOUNT = "none"
"""Row value of a region without an ELB log-delivery account (opened since August 2022)."""


@functools.cache
def elb_log_accounts() -> Mapping[str, str | None]:
    """Region name -> the ELB log-delivery account of every region this CDK version knows, sorted by name
    (``None`` where AWS documents none). Read once, in two jsii calls: every region has a partition."""
    accounts = RegionInfo.region_map(FactName.ELBV2_ACCOUNT)
    return MappingProxyType(
        {region: accounts.get(region) for region in sorted(RegionInfo.region_map(FactName.PARTITION))}
    )


class RouterLoadBalancer(Construct):
    """Internet-facing classic ELB: HTTP 80 (and HTTPS 443 with a certificate) to routers on 8080.

    A classic ELB, as in the original design, because the routers are plain HTTP services
    behind one listener and the stack registers the nodes' Auto Scaling group directly
    (:meth:`add_target`). Cross-zone balancing, connection draining, an HTTP health check of
    the router's health endpoint and access logs to an encrypted, TLS-only bucket are always on.
    """

    load_balancer: elb.LoadBalancer
    """The classic ELB."""
    access_log_bucket: s3.IBucket
    """Where the ELB writes its access logs."""
    https: bool
    """Whether the ELB has an HTTPS listener."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        access_log_bucket: s3.IBucket,
        certificate_arn: str | None = None,
        plain_http: bool = True,
        ingress_cidrs: Sequence[str] = ("0.0.0.0/0",),
        router_port: int = ROUTER_PORT,
        health_check_path: str | None = ROUTER_HEALTH_PATH,
        tls_policy: str = DEFAULT_TLS_POLICY,
        draining_timeout: Duration = DEFAULT_DRAINING_TIMEOUT,
    ) -> None:
        """
        :param vpc: VPC of the routers.
        :param subnets: the public subnets the ELB lives in.
        :param access_log_bucket: bucket (SSE-S3) that receives access logs under ``elb/``.
        :param certificate_arn: Default: no HTTPS listener, only HTTP on 80.
        :param plain_http: Default: True, HTTP on 80 beside HTTPS; False (HTTPS only) needs a certificate.
        :param ingress_cidrs: Default: anywhere (0.0.0.0/0) may reach the listeners.
        :param router_port: Default: 8080, the router's port on every node.
        :param health_check_path: Default: ``/_alchemy/health``, an HTTP check that expects 200
            (the router answers 503 while it has no broker, so the ELB stops sending it traffic);
            None: a TCP check (the router port accepts connections).
        :param tls_policy: Default: ``ELBSecurityPolicy-TLS-1-2-2017-01``; the predefined security
            policy of the HTTPS listener, one of :data:`TLS_1_2_POLICIES`. Without it a classic
            ELB applies ``ELBSecurityPolicy-2016-08``, which still accepts TLS 1.0 and 1.1.
        :param draining_timeout: Default: 60 s for in-flight requests of a node leaving service.
        """
        super().__init__(scope, construct_id)
        if not plain_http and certificate_arn is None:
            raise ValueError("plain_http=False leaves no listener: give certificate_arn for HTTPS")
        if not ingress_cidrs:
            raise ValueError("ingress_cidrs must name at least one CIDR block; received an empty list")
        if tls_policy not in TLS_1_2_POLICIES:
            raise ValueError(
                f"tls_policy must be a TLS 1.2-only classic ELB policy ({', '.join(TLS_1_2_POLICIES)}); "
                f"received {tls_policy!r}"
            )
        for cidr in ingress_cidrs:
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError:
                raise ValueError(
                    "ingress_cidrs must be IPv4 CIDR blocks with no host bits set, e.g. 203.0.113.0/24; "
                    f"received {cidr!r}"
                ) from None
        if not 1 <= router_port <= 65535:
            raise ValueError(f"router_port must be a TCP port from 1 to 65535; received {router_port}")
        if health_check_path is not None and not health_check_path.startswith("/"):
            raise ValueError(
                f"health_check_path must start with / (or be None for a TCP check); received {health_check_path!r}"
            )
        if not 1 <= draining_timeout.to_seconds() <= MAX_DRAINING_SECONDS:
            raise ValueError(
                f"draining_timeout must be from 1 second to {MAX_DRAINING_SECONDS} seconds (classic ELB); "
                f"received {draining_timeout.to_human_string()}"
            )
        self.access_log_bucket = access_log_bucket
        self.https = certificate_arn is not None
        peers = [ec2.Peer.ipv4(cidr) for cidr in ingress_cidrs]

        health_check = (
            elb.HealthCheck(port=router_port, protocol=elb.LoadBalancingProtocol.TCP)
            if health_check_path is None
            else elb.HealthCheck(
                port=router_port,
                protocol=elb.LoadBalancingProtocol.HTTP,
                path=health_check_path,
            )
        )
        self.load_balancer = elb.LoadBalancer(
            self,
            "Resource",
            vpc=vpc,
            internet_facing=True,
            cross_zone=True,
            subnet_selection=subnets,
            health_check=health_check,
            access_logging_policy=elb.CfnLoadBalancer.AccessLoggingPolicyProperty(
                enabled=True,
                s3_bucket_name=access_log_bucket.bucket_name,
                s3_bucket_prefix=ACCESS_LOG_PREFIX,
                emit_interval=5,
            ),
        )
        cfn_load_balancer = self.load_balancer.node.default_child
        assert isinstance(cfn_load_balancer, elb.CfnLoadBalancer)
        cfn_load_balancer.connection_draining_policy = elb.CfnLoadBalancer.ConnectionDrainingPolicyProperty(
            enabled=True, timeout=int(draining_timeout.to_seconds())
        )
        self._allow_log_delivery(access_log_bucket)
        # The bucket policy must exist before the ELB, or ELB creation fails its write test.
        if access_log_bucket.policy is not None:
            cfn_load_balancer.node.add_dependency(access_log_bucket.policy)

        if plain_http:
            self.load_balancer.add_listener(
                external_port=80,
                external_protocol=elb.LoadBalancingProtocol.HTTP,
                internal_port=router_port,
                internal_protocol=elb.LoadBalancingProtocol.HTTP,
                allow_connections_from=peers,
            )
        if certificate_arn is not None:
            # The L2 construct has no policies; the classic ELB's own property takes them. The
            # name carries the referenced policy, so changing it creates a new policy rather than
            # editing one the listener still uses.
            policy_name = f"TLS-{tls_policy}"
            cfn_load_balancer.policies = [
                elb.CfnLoadBalancer.PoliciesProperty(
                    policy_name=policy_name,
                    policy_type="SSLNegotiationPolicyType",
                    attributes=[{"Name": "Reference-Security-Policy", "Value": tls_policy}],
                )
            ]
            self.load_balancer.add_listener(
                external_port=443,
                external_protocol=elb.LoadBalancingProtocol.HTTPS,
                internal_port=router_port,
                internal_protocol=elb.LoadBalancingProtocol.HTTP,
                ssl_certificate_arn=certificate_arn,
                policy_names=[policy_name],
                allow_connections_from=peers,
            )
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB1",
            (
                "The classic ELB is the platform's documented ingress (the original design registers the "
                "node Auto Scaling group with it); the routers need nothing an ALB adds."
            ),
        )
        if "0.0.0.0/0" in ingress_cidrs:
            acknowledge(
                self.load_balancer.connections.security_groups[0],
                "AwsSolutions-EC23",
                "A public web entry point: the listener ports (and only they) are open to the internet "
                "because ingress_cidrs says so; narrow that setting to restrict who may connect.",
            )
        # cdk-nag's ELB5 wants TLS on every hop; the reasons differ with the listeners.
        reasons = []
        if certificate_arn is not None:
            reasons.append(
                "TLS ends at the ELB: the routers speak plain HTTP on 8080, reachable only from the ELB's "
                "security group inside the private subnets."
            )
        if plain_http and certificate_arn is not None:
            reasons.append(
                "A classic ELB cannot redirect, so port 80 keeps serving clients of the original HTTP interface."
            )
        if plain_http and certificate_arn is None:
            reasons.append(
                "Without certificate_arn there is no certificate to terminate TLS with; setting it adds an HTTPS "
                "listener on 443. Plain HTTP on 80 is the original platform's interface."
            )
        for rule in ("AwsSolutions-ELB5", "NIST.800.53.R5-ELBTlsHttpsListenersOnly"):
            acknowledge(self.load_balancer, rule, " ".join(reasons))
        if plain_http or certificate_arn is None or ":acm:" not in certificate_arn:
            acknowledge(
                self.load_balancer,
                "NIST.800.53.R5-ELBACMCertificateRequired",
                "A listener without an ACM certificate is deliberate here: plain HTTP on 80 (the default "
                "profile, for trying out) or an IAM server certificate the user chose; the production profile "
                "serves only HTTPS and needs a certificate.",
            )

    def add_target(self, target: elb.ILoadBalancerTarget) -> None:
        """Registers ``target`` (the node group's Auto Scaling group) behind every listener.

        The target's security group then admits the router port from this load balancer's
        security group, and from nothing else this construct adds.
        """
        self.load_balancer.add_target(target)

    @property
    def url(self) -> str:
        """``https://`` (with a certificate) or ``http://`` and the ELB's DNS name."""
        scheme = "https" if self.https else "http"
        return f"{scheme}://{self.load_balancer.load_balancer_dns_name}"

    @property
    def connections(self) -> ec2.Connections:
        return self.load_balancer.connections

    def _allow_log_delivery(self, bucket: s3.IBucket) -> None:
        """Lets ELB's log delivery put objects under the access-log prefix, in every region CDK knows.

        Regions opened since August 2022 deliver as the service principal; older ones deliver
        from a regional ELB account. An environment-agnostic template cannot know which, and
        ``Fn::FindInMap`` fails the whole deployment in a region its map lacks (CDK's own ELB
        account map lists only the older regions). So the map here has a row for every region
        CDK knows ("none" where AWS documents no ELB account), a condition picks the account
        principal only where there is one, and the service principal is always named.
        """
        stack = Stack.of(self)
        objects = bucket.arn_for_objects(f"{ACCESS_LOG_PREFIX}/AWSLogs/{stack.account}/*")
        principals: list[iam.IPrincipal] = [iam.ServicePrincipal(ELB_LOG_DELIVERY_SERVICE)]
        if Token.is_unresolved(stack.region):
            principals.append(iam.ArnPrincipal(self._regional_elb_account_arn()))
        else:
            account = elb_log_accounts().get(stack.region)
            if account is not None:
                principals.append(iam.AccountPrincipal(account))
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ElbAccessLogDelivery",
                actions=["s3:PutObject"],
                principals=principals,
                resources=[objects],
            )
        )

    def _regional_elb_account_arn(self) -> str:
        """The deploying region's ELB account root ARN, or ``AWS::NoValue`` (the key drops out)."""
        accounts = CfnMapping(
            self,
            "ElbLogAccounts",
            mapping={region: {"account": account or NO_ELB_ACCOUNT} for region, account in elb_log_accounts().items()},
        )
        account = accounts.find_in_map(Aws.REGION, "account")
        has_account = CfnCondition(
            self, "HasElbLogAccount", expression=Fn.condition_not(Fn.condition_equals(account, NO_ELB_ACCOUNT))
        )
        arn: str = Token.as_string(
            Fn.condition_if(has_account.logical_id, f"arn:{Aws.PARTITION}:iam::{account}:root", Aws.NO_VALUE)
        )
        return arn
