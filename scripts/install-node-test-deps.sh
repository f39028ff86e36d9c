#!/usr/bin/env bash
# Installs what tests/node needs beyond requirements-dev.txt: Debian's etcd server and client (etcd and
# etcdctl on PATH). Idempotent: does nothing when both are there. When they are not, installs them with
# apt-get, through sudo when not run as root (as on GitHub's runners, whose user has password-less sudo).
# The tests bind etcd to their own loopback addresses; the system etcd service that the package would
# start on 127.0.0.1:2379 is kept from starting, and stopped and disabled if it runs anyway.
set -euo pipefail

if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
	exit 0
fi

as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
	as_root=(sudo --non-interactive)
fi
# policy-rc.d exit status 101 tells the package scripts not to start services; an existing one is kept.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
	"${as_root[@]}" chmod 0755 "$policy"
	trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	etcd-server etcd-client >/dev/null

if [[ -d /run/systemd/system ]]; then
	"${as_root[@]}" systemctl disable --now etcd.service >/dev/null 2>&1 || true
fi
etcd --version | head -n 1
