#!/bin/sh
# kubo init hook: a private swarm. No public bootstrap peers, no mDNS, no
# relays, the RPC API on the container network only (never publish 5001).
set -eu
ipfs bootstrap rm --all
ipfs config --json Discovery.MDNS.Enabled false
ipfs config --json Swarm.RelayClient.Enabled false
ipfs config --json Swarm.RelayService.Enabled false
ipfs config --json Routing.Type '"dht"'
ipfs config Addresses.API /ip4/0.0.0.0/tcp/5001
