"""A node's instance metadata service: IMDSv2 on 169.254.169.254:80 inside the node's own namespace.

Serves what the applier, the node scripts, the AWS CLI (instance-role credentials) and RabbitMQ's AWS peer
discovery read. Tokens are required, as the launch template requires them (IMDSv1 calls get 401).
Fault injection: ``fail_requests`` makes the next N requests answer 500.
"""

from __future__ import annotations

import datetime
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.boot.harness import netns
from tests.boot.harness.cloud import CREDENTIAL

ROLE = "alchemy-node"


@dataclass
class Instance:
    instance_id: str
    ip: str
    zone: str
    user_data: str
    tags: dict[str, str]
    target_lifecycle_state: str = "InService"
    fail_requests: int = 0
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def meta_data(self, path: str) -> str | None:
        credentials = {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": CREDENTIAL,
            "SecretAccessKey": CREDENTIAL,
            "Token": CREDENTIAL,
            "LastUpdated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Expiration": (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
        values: dict[str, str] = {
            "instance-id": self.instance_id,
            "local-ipv4": self.ip,
            "local-hostname": f"ip-{self.ip.replace('.', '-')}.{self.zone[:-1]}.compute.internal",
            "hostname": f"ip-{self.ip.replace('.', '-')}.{self.zone[:-1]}.compute.internal",
            "placement/availability-zone": self.zone,
            "placement/region": self.zone[:-1],
            "instance-type": "t3.small",
            "autoscaling/target-lifecycle-state": self.target_lifecycle_state,
            "iam/security-credentials": ROLE,
            f"iam/security-credentials/{ROLE}": json.dumps(credentials),
            "tags/instance": "\n".join(self.tags),
        }
        for key, value in self.tags.items():
            values[f"tags/instance/{key}"] = value
        return values.get(path.rstrip("/"))

    def dynamic(self, path: str) -> str | None:
        if path == "instance-identity/document":
            return json.dumps(
                {
                    "instanceId": self.instance_id,
                    "privateIp": self.ip,
                    "availabilityZone": self.zone,
                    "region": self.zone[:-1],
                    "accountId": "123456789012",
                }
            )
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fault(self) -> bool:
        instance = self.server.instance
        with instance.lock:
            if instance.fail_requests > 0:
                instance.fail_requests -= 1
                return True
        return False

    def do_PUT(self) -> None:
        if self._fault():
            return self._answer(500, "injected fault")
        if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
            return self._answer(400)
        token = secrets.token_urlsafe(24)
        with self.server.instance.lock:
            self.server.instance.tokens.add(token)
        self._answer(200, token)

    def do_GET(self) -> None:
        instance = self.server.instance
        if self._fault():
            return self._answer(500, "injected fault")
        if self.headers.get("X-aws-ec2-metadata-token") not in instance.tokens:
            return self._answer(401)
        value: str | None
        if self.path == "/latest/user-data":
            value = instance.user_data
        elif self.path.startswith("/latest/meta-data/"):
            value = instance.meta_data(self.path.removeprefix("/latest/meta-data/"))
        elif self.path.startswith("/latest/dynamic/"):
            value = instance.dynamic(self.path.removeprefix("/latest/dynamic/"))
        else:
            value = None
        if value is None:
            return self._answer(404, "Not Found")
        self._answer(200, value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    instance: Instance


def serve(instance: Instance, namespace: str) -> _Server:
    with netns.inside(namespace):
        server = _Server(("169.254.169.254", 80), _Handler)
    server.instance = instance
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
