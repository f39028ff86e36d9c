#!/usr/bin/env bash
# build-root.sh CACHE_DIR: builds the Debian 13 root that every booted node starts from, once per machine.
# The root is keyed on the part of this script between the "key:" markers (package list, hooks, mirror):
# a change there builds a new root (and drops the old one), anything else reuses the cached root.
# Prints the root's path on stdout.
# Needs root and mmdebstrap (installed with apt-get when missing).
set -euo pipefail
cache=${1:?usage: build-root.sh CACHE_DIR}
mirror=${BOOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# What the units and scripts need natively: systemd as PID 1, etcd and RabbitMQ from Debian (the images'
# programs), the AWS CLI, python3 for the router, hello_world and the cloud-config applier, and the tools
# the node scripts call (curl, tar, sha256sum, unshare for the docker shim's volumes).
# key: begin
packages=(
	systemd systemd-sysv dbus libpam-systemd
	etcd-server etcd-client rabbitmq-server awscli
	python3 python3-yaml python3-pip
	curl ca-certificates iproute2 procps util-linux tar gzip coreutils gawk sed grep findutils
)

key=$( (
	sed -n '/^# key: begin$/,/^# key: end$/p' "$0"
	echo "$mirror"
) | sha256sum | cut -c1-16)
root="$cache/root-$key"
if [[ -e "$root/.complete" ]]; then
	echo "$root"
	exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
if [[ -e "$root/.complete" ]]; then
	echo "$root"
	exit 0
fi
command -v mmdebstrap >/dev/null || {
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
}
tmp="$root.tmp"
rm -rf "$tmp"
# The hooks: Debian's own etcd and RabbitMQ services must not start (the node runs them through its units
# and the docker shim), and the broker's user gets uid/gid 999 like in the official image, which the
# units chown the broker's files to.
# shellcheck disable=SC2016 # single-quoted on purpose: mmdebstrap's own shell expands $1 (the root) in each hook
mmdebstrap --variant=apt --include="$(
	IFS=,
	echo "${packages[*]}"
)" \
	--essential-hook='mkdir -p "$1/usr/sbin" && printf "#!/bin/sh\nexit 101\n" > "$1/usr/sbin/policy-rc.d" && chmod 0755 "$1/usr/sbin/policy-rc.d"' \
	--customize-hook='rm -f "$1/usr/sbin/policy-rc.d" "$1/usr/lib/systemd/system/etcd.service" "$1/etc/systemd/system/multi-user.target.wants/etcd.service" "$1/etc/init.d/etcd" "$1/etc/init.d/rabbitmq-server"' \
	--customize-hook='rm -f "$1/etc/systemd/system/multi-user.target.wants/rabbitmq-server.service"; ln -sf /dev/null "$1/etc/systemd/system/rabbitmq-server.service"' \
	--customize-hook='other=$(chroot "$1" getent passwd 999 | cut -d: -f1); if [ -n "$other" ] && [ "$other" != rabbitmq ]; then chroot "$1" usermod -u 1999 "$other"; fi; grp=$(chroot "$1" getent group 999 | cut -d: -f1); if [ -n "$grp" ] && [ "$grp" != rabbitmq ]; then chroot "$1" groupmod -g 1999 "$grp"; fi; chroot "$1" usermod -u 999 rabbitmq; chroot "$1" groupmod -g 999 rabbitmq; chroot "$1" chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq /etc/rabbitmq' \
	--customize-hook='for u in getty@tty1.service console-getty.service systemd-logind.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done' \
	--customize-hook='rm -rf "$1/var/cache/apt/archives"/*.deb "$1/var/lib/apt/lists"/*' \
	trixie "$tmp" "$mirror" >&2
# key: end
touch "$tmp/.complete"
rm -rf "$root"
mv "$tmp" "$root"
# Roots of earlier versions of this script are not used any more.
find "$cache" -maxdepth 1 -name 'root-*' ! -path "$root" -exec rm -rf {} +
echo "$root"
