#!/bin/sh
# Install Debian's `prometheus` package (promtool and the server, used by the exporter's
# tests) when promtool is missing. Needs root and apt-get; otherwise says what to do and
# exits 0 (the tests that need it skip outside CI).
#
# The package's postinst runs `invoke-rc.d prometheus start`; without systemd that would
# start a daemon holding :9090. A policy-rc.d answering 101 ("action forbidden") stops it,
# so a temporary one is put in place when the machine has none.
set -eu

command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool is missing: install Debian's prometheus package as root" \
         "(apt-get install --no-install-recommends prometheus)" >&2
    exit 0
fi

policy=/usr/sbin/policy-rc.d
temporary_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    temporary_policy=1
fi
status=0
{ apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus \
      >/dev/null; } || status=$?
[ -n "$temporary_policy" ] && rm -f "$policy"
exit "$status"
