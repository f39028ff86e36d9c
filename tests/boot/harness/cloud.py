"""The stand-in for AWS: moto in this process, served on the bridge, plus the few calls moto lacks.

moto answers Secrets Manager, S3, EC2 and Auto Scaling (the group, its instances and their private IPs).
Faked here, because moto 5 has no such calls: CloudFormation ``SignalResource`` (recorded, with its time)
and Auto Scaling ``CompleteLifecycleAction`` (recorded; the harness then finishes the termination).
Fault injection: Secrets Manager answers ``ThrottlingException`` to a node's first N calls.
One moto gap is mended on the way in: RabbitMQ's AWS peer discovery asks ``DescribeInstances`` for the group's
instances as ``InstanceId.3``, ``InstanceId.4``, ... (it numbers them after the request's other two parameters).
EC2 reads the list whatever its numbers; moto reads from ``InstanceId.1`` on, finds none, and answers with every
instance it ever launched, the terminated ones with their old addresses, so each broker went looking for every
dead node (peer discovery stalled 47-92 s on later nodes, and a dead member was never forgotten). The
harness renumbers the list from 1.

The same application listens three times: over HTTP on the bridge (the AWS CLI's ``AWS_ENDPOINT_URL``),
over HTTPS on the bridge's port 443 under the regional endpoint names (RabbitMQ's AWS peer discovery has no
endpoint setting: the nodes' /etc/hosts sends those names to the bridge and trust the harness's CA), and
over HTTP on 127.0.0.1 at a free port for the harness's own boto3 calls.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.boot.harness import netns

REGION = "eu-west-1"
ACCOUNT = "123456789012"
CREDENTIAL = "testing"
ENDPOINT_NAMES = ("ec2", "autoscaling", "secretsmanager", "s3", "cloudformation", "sts")


@dataclass
class Records:
    signals: list[dict[str, Any]] = field(default_factory=list)
    lifecycle_completions: list[dict[str, Any]] = field(default_factory=list)
    throttle: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Source IP -> Secrets Manager calls still to refuse."""
    lock: threading.Lock = field(default_factory=threading.Lock)


INSTANCE_ID_KEY = re.compile(r"^InstanceId\.(\d+)$")


def instance_ids_from_one(query: str) -> str:
    """The query with its ``InstanceId.N`` list numbered 1, 2, ... in the order of N (EC2 reads it either way)."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    listed = sorted((int(match[1]), value) for key, value in pairs if (match := INSTANCE_ID_KEY.match(key)))
    others = [(key, value) for key, value in pairs if not INSTANCE_ID_KEY.match(key)]
    numbered = [(f"InstanceId.{index}", value) for index, (_, value) in enumerate(listed, start=1)]
    return urllib.parse.urlencode(others + numbered)


class Interceptor:
    """WSGI middleware: the fakes and faults in front of moto."""

    def __init__(self, app: Any, records: Records) -> None:
        self.app = app
        self.records = records

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        source = environ.get("REMOTE_ADDR", "")
        if environ.get("REQUEST_METHOD") == "GET" and "Action=DescribeInstances" in environ.get("QUERY_STRING", ""):
            environ["QUERY_STRING"] = instance_ids_from_one(environ["QUERY_STRING"])
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("secretsmanager.") and self._take_throttle(source):
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")])
            return [body]
        if environ.get("REQUEST_METHOD") == "POST" and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length)
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            action = form.get("Action")
            if action == "SignalResource":
                return self._signal(form, source, start_response)
            if action == "CompleteLifecycleAction":
                return self._complete(form, source, start_response)
            import io

            environ["wsgi.input"] = io.BytesIO(raw)
        return self.app(environ, start_response)

    def _take_throttle(self, source: str) -> bool:
        with self.records.lock:
            if self.records.throttle.get(source, 0) > 0:
                self.records.throttle[source] -= 1
                return True
        return False

    def _signal(self, form: dict[str, str], source: str, start_response: Any) -> list[bytes]:
        with self.records.lock:
            self.records.signals.append(
                {
                    "time": time.time(),
                    "source": source,
                    "stack": form.get("StackName"),
                    "logical_id": form.get("LogicalResourceId"),
                    "unique_id": form.get("UniqueId"),
                    "status": form.get("Status"),
                }
            )
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [
            b'<SignalResourceResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
            b"<ResponseMetadata><RequestId>boot-harness</RequestId></ResponseMetadata></SignalResourceResponse>"
        ]

    def _complete(self, form: dict[str, str], source: str, start_response: Any) -> list[bytes]:
        with self.records.lock:
            self.records.lifecycle_completions.append({"time": time.time(), "source": source, **form})
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [
            b'<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            b"<CompleteLifecycleActionResult/><ResponseMetadata><RequestId>boot-harness</RequestId>"
            b"</ResponseMetadata></CompleteLifecycleActionResponse>"
        ]


def certificate_authority(directory: Path) -> tuple[Path, Path, Path]:
    """A CA (kept in ``directory`` across runs) and a certificate for the regional endpoint names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / "ca.crt", directory / f"endpoints-{REGION}.crt", directory / "key.pem"
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alchemy boot harness CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    names = [x509.DNSName(f"{service}.{REGION}.amazonaws.com") for service in ENDPOINT_NAMES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ec2.{REGION}.amazonaws.com")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    return ca_path, cert_path, key_path


class Cloud:
    """moto behind the interceptor, listening on the bridge and on loopback; the group and its secrets."""

    def __init__(self, *, network: netns.Network, ca_directory: Path) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        # One line per request from werkzeug would bury the timelines.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.records = Records()
        self.app = Interceptor(DomainDispatcherApplication(create_backend_app), self.records)
        self.ca, cert, key = certificate_authority(ca_directory)
        self.servers = []
        with netns.inside(network.vpc):
            bridge = make_server(network.gateway, 0, self.app, threaded=True)
            secure = make_server(network.gateway, 443, self.app, threaded=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        local = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.servers = [bridge, secure, local]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.endpoint = f"http://{network.gateway}:{bridge.server_port}"
        self.local_endpoint = f"http://127.0.0.1:{local.server_port}"
        self.gateway = network.gateway
        self.clients: dict[str, Any] = {}
        self.group = ""
        self.secret_arns: dict[str, str] = {}
        self.buckets: dict[str, str] = {}

    def client(self, service: str) -> Any:
        if service not in self.clients:
            import boto3  # type: ignore[import-untyped]

            self.clients[service] = boto3.client(
                service,
                endpoint_url=self.local_endpoint,
                region_name=REGION,
                aws_access_key_id=CREDENTIAL,
                aws_secret_access_key=CREDENTIAL,
            )
        return self.clients[service]

    def presigning_client(self) -> Any:
        """An S3 client whose presigned URLs point at moto on the bridge, where the nodes reach it (an
        operator's presigned URL points at S3, which the nodes reach through the NAT)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIAL,
            aws_secret_access_key=CREDENTIAL,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def node_environment(self) -> dict[str, str]:
        """What the nodes' AWS CLI is given besides its instance-role credentials (from metadata)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_CONFIG_FILE": "/etc/alchemy-boot/aws-config"}

    def create_secret(self, logical_id: str) -> str:
        value = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        arn: str = self.client("secretsmanager").create_secret(Name=f"boot/{logical_id}", SecretString=value)["ARN"]
        self.secret_arns[logical_id] = arn
        return arn

    def create_bucket(self, logical_id: str) -> str:
        name = f"boot-{logical_id.lower()[:40]}-{secrets.token_hex(4)}"
        self.client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.buckets[logical_id] = name
        return name

    def publish(self, *, url: str, body: bytes) -> None:
        """An asset at ``s3://bucket/key``, its bucket created first (the CDK bootstrap's assets bucket)."""
        bucket, _, key = url.removeprefix("s3://").partition("/")
        s3 = self.client("s3")
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    def create_group(self, *, name: str, subnet: str, size: int, tags: dict[str, str]) -> None:
        """The node group: moto launches ``size`` instances with private IPs in ``subnet``.0/24 (from .4 on)."""
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock=str(ipaddress.ip_network(f"{subnet}.0/16", strict=False)))["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{subnet}.0/24", AvailabilityZone=f"{REGION}a")["Subnet"][
            "SubnetId"
        ]
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.create_launch_template(
            LaunchTemplateName=f"{name}-template", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.small"}
        )
        self.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": f"{name}-template"},
            MinSize=0,
            MaxSize=size + 2,
            DesiredCapacity=size,
            VPCZoneIdentifier=subnet_id,
            Tags=[
                {
                    "Key": key,
                    "Value": value,
                    "PropagateAtLaunch": True,
                    "ResourceId": name,
                    "ResourceType": "auto-scaling-group",
                }
                for key, value in tags.items()
            ],
        )
        self.group = name

    def instances(self) -> list[tuple[str, str, str]]:
        """(instance id, private IP, lifecycle state) of the group's instances, sorted by id."""
        described = self.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        states = {i["InstanceId"]: i["LifecycleState"] for i in described["AutoScalingGroups"][0]["Instances"]}
        if not states:
            return []
        reservations = self.client("ec2").describe_instances(InstanceIds=list(states))["Reservations"]
        return sorted(
            (i["InstanceId"], i["PrivateIpAddress"], states[i["InstanceId"]])
            for r in reservations
            for i in r["Instances"]
        )

    def _group_backend(self) -> Any:
        from moto.autoscaling.models import autoscaling_backends

        return autoscaling_backends[ACCOUNT][REGION].autoscaling_groups[self.group]

    def set_lifecycle_state(self, instance_id: str, state: str) -> None:
        """What only a lifecycle hook makes (Terminating:Wait): set directly in moto's model."""
        for instance_state in self._group_backend().instance_states:
            if instance_state.instance.id == instance_id:
                instance_state.lifecycle_state = state
                return
        raise KeyError(instance_id)

    def drop_instance(self, instance_id: str, *, decrement: bool) -> None:
        """The group lets go of an instance and EC2 terminates it (no replacement launched here)."""
        group = self._group_backend()
        group.instance_states = [s for s in group.instance_states if s.instance.id != instance_id]
        if decrement:
            group.desired_capacity -= 1
        self.client("ec2").terminate_instances(InstanceIds=[instance_id])

    def launch_replacement(self) -> tuple[str, str]:
        """The group fills back up to its desired capacity: the new instance's id and IP."""
        before = {i for i, _, _ in self.instances()}
        group = self._group_backend()
        group.set_desired_capacity(group.desired_capacity)
        new = [(i, ip) for i, ip, _ in self.instances() if i not in before]
        if len(new) != 1:
            raise AssertionError(f"expected one replacement instance, got {new}")
        return new[0]

    def throttle_secrets(self, ip: str, calls: int) -> None:
        with self.records.lock:
            self.records.throttle[ip] = calls

    def signals_from(self, instance_id: str) -> list[dict[str, Any]]:
        with self.records.lock:
            return [s for s in self.records.signals if s["unique_id"] == instance_id]
