#!/bin/sh
# Runs before `npm test`: the tests drive real peers and clients (curl, dig, dnsmasq, nginx, haproxy,
# wrk, iperf3, ip netns), so a fresh machine gets them from Debian when we are root; elsewhere the
# missing ones are named. Then tap's plugin set is rebuilt: a fresh `npm ci` ships tap built with
# its TypeScript plugin, which .taprc turns off (Node strips the types itself).
set -u
missing=""
for pair in curl:curl dig:bind9-dnsutils dnsmasq:dnsmasq-base nginx:nginx-light haproxy:haproxy \
            wrk:wrk dnsperf:dnsperf iperf3:iperf3 ip:iproute2 openssl:openssl; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "pretest: installing Debian packages the tests drive:$missing"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing ca-certificates; } >/dev/null ||
      echo "pretest: apt-get could not install:$missing (tests that drive them will fail)"
  else
    echo "pretest: missing tools the tests drive (install them, e.g. apt-get install$missing):$missing"
  fi
fi
exec tap build
