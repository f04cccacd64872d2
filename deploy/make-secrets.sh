#!/bin/sh
# Makes everything docker-compose.yml mounts or interpolates that must not be in
# the repository, under DIR (default: the repository root). Run once; existing
# files are kept, so running it again changes nothing.
#
#   DIR/deploy/certs/ca.pem, ca-key.pem    a private CA for the consortium's hops
#   DIR/deploy/certs/NAME.pem, NAME-key.pem   a certificate per etcd member, MinIO,
#                                          node (server and client use) and kubo TLS
#                                          proxy (also NAME.bundle.pem: both in one)
#   DIR/deploy/swarm.key                   the private IPFS swarm's key
#   DIR/deploy/NODE.passphrase             each node's keystore passphrase
#   DIR/.env                               MinIO's root credentials and one S3
#                                          secret per organisation
#
# Keep ca-key.pem offline once the certificates are made.
set -eu
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
certs="$dir/deploy/certs"
mkdir -p "$certs"
umask 077

if [ ! -f "$certs/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj /CN=medvault-consortium-ca -keyout "$certs/ca-key.pem" -out "$certs/ca.pem" 2>/dev/null
fi

# A certificate for NAME (its service name, localhost and 127.0.0.1: the health checks), for
# serving and for calling (mutual TLS between nodes, client certificates to etcd).
issue() {
  name=$1
  [ -f "$certs/$name.pem" ] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$certs/$name-key.pem" -out "$certs/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" \
    > "$certs/$name.ext"
  openssl x509 -req -in "$certs/$name.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca-key.pem" -CAcreateserial \
    -days 825 -extfile "$certs/$name.ext" -out "$certs/$name.pem" 2>/dev/null
  rm -f "$certs/$name.csr" "$certs/$name.ext"
}
for name in etcd1 etcd2 etcd3 minio hospital-a insurer lab; do issue "$name"; done
# The TLS proxy in front of each kubo's RPC API (deploy/kubo-tls.cfg) takes its certificate
# and key in one file.
for org in hospital-a insurer lab; do
  issue "kubo-$org-tls"
  cat "$certs/kubo-$org-tls.pem" "$certs/kubo-$org-tls-key.pem" > "$certs/kubo-$org-tls.bundle.pem"
done
# The containers run as their own users: certificates and keys readable by them.
chmod 644 "$certs"/*.pem
chmod 600 "$certs/ca-key.pem"
chmod 755 "$certs"

if [ ! -f "$dir/deploy/swarm.key" ]; then
  printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$(openssl rand -hex 32)" > "$dir/deploy/swarm.key"
fi
for node in hospital-a insurer lab; do
  [ -f "$dir/deploy/$node.passphrase" ] || openssl rand -base64 32 > "$dir/deploy/$node.passphrase"
  # Compose mounts a file secret as it is: the node's user in the container must read it.
  chmod 644 "$dir/deploy/$node.passphrase"
done

if [ ! -f "$dir/.env" ]; then
  {
    echo "MINIO_ROOT_USER=medvault-root"
    echo "MINIO_ROOT_PASSWORD=$(openssl rand -hex 24)"
    echo "HOSPITAL_A_S3_SECRET=$(openssl rand -hex 24)"
    echo "INSURER_S3_SECRET=$(openssl rand -hex 24)"
    echo "LAB_S3_SECRET=$(openssl rand -hex 24)"
  } > "$dir/.env"
fi
