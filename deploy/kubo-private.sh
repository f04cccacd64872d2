#!/bin/sh
# kubo init hook: a private swarm. No public bootstrap peers, no relays; the
# RPC API only at KUBO_API (the organisation's own network; never publish
# 5001). mDNS finds the consortium's other kubos on the swarm network, which
# holds nothing else (and the swarm key shuts out any peer without it).
set -eu
ipfs bootstrap rm --all
ipfs config --json Discovery.MDNS.Enabled true
ipfs config --json Swarm.RelayClient.Enabled false
ipfs config --json Swarm.RelayService.Enabled false
ipfs config --json Routing.Type '"dht"'
ipfs config Addresses.API "${KUBO_API:-/ip4/0.0.0.0/tcp/5001}"
