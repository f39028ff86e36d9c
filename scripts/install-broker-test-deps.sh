#!/usr/bin/env bash
# Installs what tests/services needs beyond requirements-dev.txt: Debian's RabbitMQ server (and the
# Erlang runtime it brings). Idempotent: does nothing when the server is there. Needs root (apt-get)
# when it is not.
# The tests start their own broker on 127.0.0.1 with free ports and their own epmd; the system broker
# that the package would start on the fixed ports 5672/25672 (and the epmd on 4369 that comes with it)
# is kept from starting, and stopped if it runs anyway.
set -euo pipefail

server=/usr/lib/rabbitmq/bin/rabbitmq-server
if [[ -x "$server" ]] && command -v epmd >/dev/null; then
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit status 101 tells the package scripts not to start services; an existing one is kept.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
# epmd daemons running before the install are someone else's: only ones the install starts are stopped.
before=$(pgrep -x epmd || true)
apt-get update -qq
apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null

if [[ -d /run/systemd/system ]]; then
	systemctl disable --now rabbitmq-server.service >/dev/null 2>&1 || true
	systemctl disable --now epmd.socket epmd.service >/dev/null 2>&1 || true
fi
for pid in $(pgrep -x epmd || true); do
	if ! grep -qx "$pid" <<<"$before"; then
		kill "$pid"
	fi
done
dpkg-query -W -f='rabbitmq-server ${Version}\n' rabbitmq-server
