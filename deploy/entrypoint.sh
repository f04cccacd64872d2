#!/bin/sh
# First start: make the node's data directory (keys, config, the first admin's
# member key file in /data/admin.key: move it to the admin). Then serve.
set -eu
if [ ! -f /data/medvault.json ]; then
  medvault init --data /data --name "${MEDVAULT_NODE_NAME:-node}"
fi
exec medvault serve --data /data --host 0.0.0.0
