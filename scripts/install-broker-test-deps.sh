#!/usr/bin/env bash
# Installs what tests/services needs beyond requirements-dev.txt: Debian's RabbitMQ server (and the
# Erlang runtime it brings). Idempotent: does nothing when the server is there. When it is not, installs it
# with apt-get, through sudo when not run as root (as on GitHub's runners, whose user has password-less sudo).
# The tests start their own broker on 127.0.0.1 with free ports and their own epmd; the system broker
# that the package would start on the fixed ports 5672/25672 (and the epmd on 4369 that comes with it)
# is kept from starting and from being enabled, and stopped if it runs anyway.
set -euo pipefail

server=/usr/lib/rabbitmq/bin/rabbitmq-server
if [[ -x "$server" ]] && command -v epmd >/dev/null; then
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
# epmd daemons running before the install are someone else's: only ones the install starts are stopped.
before=$(pgrep -x epmd || true)
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	rabbitmq-server >/dev/null

# Not enabled either: a later boot of this machine (or of a container on this root filesystem) would
# otherwise start them. `systemctl disable` edits links only, so it works where systemd is not running.
units=(rabbitmq-server.service epmd.socket epmd.service)
if command -v systemctl >/dev/null; then
	"${as_root[@]}" systemctl disable "${units[@]}" >/dev/null 2>&1 || true
	if [[ -d /run/systemd/system ]]; then
		"${as_root[@]}" systemctl stop "${units[@]}" >/dev/null 2>&1 || true
	fi
fi
for pid in $(pgrep -x epmd || true); do
	if ! grep -qx "$pid" <<<"$before"; then
		"${as_root[@]}" kill "$pid"
	fi
done
dpkg-query -W -f='rabbitmq-server ${Version}\n' rabbitmq-server
