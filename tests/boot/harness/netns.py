"""Network namespaces the harness creates, and sockets opened inside them from this process.

Every address the harness uses lives in namespaces it made: a bridge namespace (the "VPC") and one
namespace per node, joined to the bridge by a veth pair. The harness's own servers (the AWS stand-in,
each node's instance metadata) are sockets this process opens inside those namespaces: a socket keeps the
namespace it was created in, so no helper process or host address is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """This thread in namespace ``name`` for the block: sockets opened in it stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


class Network:
    """The bridge namespace ``<prefix>-vpc`` (bridge at ``<subnet>.1``) and the node namespaces."""

    def __init__(self, *, prefix: str, subnet: str) -> None:
        self.prefix = prefix
        self.subnet = subnet
        self.vpc = f"{prefix}-vpc"
        self.gateway = f"{subnet}.1"
        self.nodes: list[str] = []
        run("ip", "netns", "add", self.vpc)
        self._in(self.vpc, "ip", "link", "set", "lo", "up")
        self._in(self.vpc, "ip", "link", "add", "br0", "type", "bridge")
        self._in(self.vpc, "ip", "addr", "add", f"{self.gateway}/24", "dev", "br0")
        self._in(self.vpc, "ip", "link", "set", "br0", "up")

    @staticmethod
    def _in(namespace: str, *command: str) -> None:
        run("ip", "netns", "exec", namespace, *command)

    def add_node(self, *, ip: str) -> str:
        """A namespace for the node at ``ip``: eth0 on the bridge, default route via the bridge, and the
        instance metadata address on its loopback (where that node's metadata service listens)."""
        suffix = ip.rsplit(".", 1)[1]
        name = f"{self.prefix}-n{suffix}"
        run("ip", "netns", "add", name)
        self.nodes.append(name)
        veth = f"v{suffix}"
        self._in(self.vpc, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        self._in(self.vpc, "ip", "link", "set", veth, "master", "br0", "up")
        self._in(name, "ip", "link", "set", "lo", "up")
        self._in(name, "ip", "addr", "add", "169.254.169.254/32", "dev", "lo")
        self._in(name, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        self._in(name, "ip", "link", "set", "eth0", "up")
        self._in(name, "ip", "route", "add", "default", "via", self.gateway)
        return name

    def remove_node(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if name in self.nodes:
            self.nodes.remove(name)

    def close(self) -> None:
        for name in list(self.nodes):
            self.remove_node(name)
        subprocess.run(["ip", "netns", "del", self.vpc], capture_output=True)


def leftovers(prefix: str) -> list[str]:
    """Namespaces of an earlier run that did not clean up (killed with SIGKILL)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(prefix)]
