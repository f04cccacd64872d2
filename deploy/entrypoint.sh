#!/bin/sh
# A node's container: on the first start, make its data directory, then serve.
#
#   founding node   (no MEDVAULT_JOIN): medvault init founds the consortium on
#                   MEDVAULT_LEDGER; the first admin's key is DATA/admin.key
#                   (move it to the admin).
#   joining node    (MEDVAULT_JOIN=/path/to/invite): the first start makes the
#                   node's keys and prints its join request (also in
#                   DATA/join-request.json), then waits for the invite an admin
#                   of a member node makes from it (medvault consortium invite)
#                   to appear at MEDVAULT_JOIN, joins, and serves.
#
# Later starts only serve. MEDVAULT_DATA (default /data), MEDVAULT_NODE_NAME,
# MEDVAULT_PORT (default 7400), MEDVAULT_URL (what the other nodes reach this
# one at) and MEDVAULT_TLS_CERT / MEDVAULT_TLS_KEY (serve HTTPS with them; the
# certificate is announced on the ledger) and MEDVAULT_PKCS11_LIBRARY /
# MEDVAULT_PKCS11_TOKEN (the subjects' custodian keys on that PKCS#11 token; its
# PIN in MEDVAULT_PKCS11_PIN_FILE or MEDVAULT_PKCS11_PIN) are read here; the
# rest (ledger, store, keystore, the PIN) by medvault itself.
set -eu
data="${MEDVAULT_DATA:-/data}"
init_args="--data $data --name ${MEDVAULT_NODE_NAME:-node} --port ${MEDVAULT_PORT:-7400}"
if [ -n "${MEDVAULT_URL:-}" ]; then init_args="$init_args --url $MEDVAULT_URL"; fi
if [ -n "${MEDVAULT_TLS_CERT:-}" ]; then
  init_args="$init_args --tls-cert $MEDVAULT_TLS_CERT --tls-key ${MEDVAULT_TLS_KEY:?MEDVAULT_TLS_KEY with MEDVAULT_TLS_CERT}"
fi
if [ -n "${MEDVAULT_PKCS11_LIBRARY:-}" ]; then
  init_args="$init_args --pkcs11-library $MEDVAULT_PKCS11_LIBRARY --pkcs11-token ${MEDVAULT_PKCS11_TOKEN:?MEDVAULT_PKCS11_TOKEN with MEDVAULT_PKCS11_LIBRARY}"
fi

if [ ! -f "$data/medvault.json" ]; then
  if [ -z "${MEDVAULT_JOIN:-}" ]; then
    # shellcheck disable=SC2086 # the arguments are words
    medvault init $init_args
  else
    if [ ! -f "$data/join-request.json" ]; then
      medvault consortium request --data "$data" >/dev/null
    fi
    echo "medvault: waiting for the invite at $MEDVAULT_JOIN; this node's join request:" >&2
    cat "$data/join-request.json" >&2
    while [ ! -s "$MEDVAULT_JOIN" ]; do sleep 1; done
    # shellcheck disable=SC2086
    medvault init $init_args --join "$MEDVAULT_JOIN"
  fi
fi
exec medvault serve --data "$data" --host "${MEDVAULT_HOST:-0.0.0.0}"
