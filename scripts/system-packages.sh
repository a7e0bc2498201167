#!/usr/bin/env bash
# Installs the Debian packages weave-ts needs, only when some are missing.
#   system-packages.sh runtime   what `npm install` needs to build and `weave launch` to run
#   system-packages.sh           that plus what the tests and benchmarks use (`npm test`)
# Without root it only says what is missing (the build then says what failed; lab tests skip).
set -euo pipefail
runtime=(
  gcc libc6-dev                                        # the native module and static weavewait
  iproute2 iptables ethtool kmod                       # the weave bridge, veths, firewall rules
  nftables                                             # the kernel vxlan path's per-peer traffic counters (nft)
  libsodium23                                          # native ChaCha20-Poly1305 for sleeve encryption
)
tests=(
  util-linux procps psmisc                             # namespaces, faults, nsenter, process checks (nft: runtime)
  docker.io containerd                                 # a real dockerd per lab host
  openvswitch-switch                                   # ovsdb-server + ovs-vswitchd per lab host
  iperf3 tcpdump busybox-static                        # benchmarks, captures, the test image
  make python3
  systemd                                              # systemd-analyze verify of the shipped unit file (unit/systemd-unit)
  qemu-system-x86 linux-image-amd64 xz-utils           # the stock-kernel VM lab (test/vm): kernel OVS datapath, ESP
  chromium curl                                        # a real browser and curl against the local API (api-browser, api-guard)
  clang libfuzzer-14-dev libclang-rt-14-dev            # libFuzzer + ASan/UBSan on the addon's parsing (native-fuzz)
  podman containernetworking-plugins runc conmon jq   # CNI plugin tests: podman (CNI backend), portmap; jq in the lab runc wrapper
  prometheus                                           # a real Prometheus scraping lab routers (lab/observe)
  openssl                                              # CA and certificates made by the proxy TLS test (parity-proxy-tls)
  dnsmasq-base bind9-dnsutils                          # weaveDNS: dnsmasq (the binary, no system service) as the lab upstream and bench baseline, dig
)
packages=("${runtime[@]}")
[ "${1:-all}" = runtime ] || packages+=("${tests[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-packages: missing ${missing[*]} (as root on Debian this script installs them)" >&2
  exit 0
fi
echo "system-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
