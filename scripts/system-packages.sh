#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, only when some are missing.
# Without root it only says what is missing (the lab tests then skip and say why).
set -euo pipefail
packages=(
  iproute2 iptables nftables util-linux procps psmisc   # namespaces, links, firewall, nsenter
  docker.io containerd                                 # a real dockerd per lab host
  openvswitch-switch                                   # ovsdb-server + ovs-vswitchd per lab host
  iperf3 tcpdump busybox-static                        # benchmarks, captures, the test image
  gcc make python3                                     # the native module and weavewait
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-packages: missing ${missing[*]} (run as root to install them)" >&2
  exit 0
fi
echo "system-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
