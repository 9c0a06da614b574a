#!/bin/sh
# Lays out the container image's whole file tree in DIR from a static
# marketcast binary: the Dockerfile's build stage runs it and its final stage
# is this tree on scratch. The tests run it too, then start the binary from
# the tree alone (chroot, an unprivileged user), since no container runtime
# runs on the development machines.
#
#   deploy/rootfs.sh BINARY DIR
#
# The tree: the binary (static, with Go's time zone database inside), the CA
# certificates (JWKS and NATS over TLS), passwd and group naming the
# unprivileged user 65532 it runs as, /etc/marketcast for a config file and
# certificates, /var/lib/marketcast (the embedded NATS store, writable by
# that user), /tmp, and the mount points a runtime fills (/proc, /dev).
set -eu
bin=$1
root=$2
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/etc/marketcast" "$root/var/lib/marketcast" \
	"$root/tmp" "$root/proc" "$root/dev"
install -m 0755 "$bin" "$root/usr/local/bin/marketcast"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nmarketcast:x:65532:65532:marketcast:/var/lib/marketcast:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nmarketcast:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chown 65532:65532 "$root/var/lib/marketcast"
chmod 0750 "$root/var/lib/marketcast"
chmod 1777 "$root/tmp"
