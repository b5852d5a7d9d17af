#!/usr/bin/env bash
# Certificates for a Scale cluster's mutual TLS, from a private CA of its own (OpenSSL).
#
#   deploy/tls/make-certs.sh DIR NAME...
#
# NAME: every host name or IP address that nodes and clients are reached at (what --bind/--public-host, --seeds and
# --client-host say); a wildcard such as '*.cluster.example' covers a domain. Writes into DIR (created, mode 700):
#   ca.cer      the CA's certificate (DER): give it to every node and client as --tls-ca
#   ca.key      the CA's private key: keep it away from the nodes; with it here, a later run issues from the same CA
#   node.pfx    a certificate for NAME..., issued by the CA, with its key (PKCS#12): --tls-certificate
#   password    node.pfx's password, random (mode 600): --tls-password-file
# One node certificate serves every node (each names all hosts); run it once per role for separate certificates.
# Valid for SCALE_CERT_DAYS days (default 365).
set -euo pipefail
if (( $# < 2 )); then
  echo "usage: $0 DIR NAME... (the host names or addresses the nodes are reached at)" >&2
  exit 2
fi
dir=$1; shift
days=${SCALE_CERT_DAYS:-365}
command -v openssl >/dev/null || { echo "$0: openssl is not installed" >&2; exit 2; }
umask 077
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -f "$dir/ca.key" ]]; then
  openssl req -x509 -new -newkey rsa:3072 -nodes -keyout "$dir/ca.key" -out "$work/ca.pem" -days "$days" -sha256 \
    -subj "/CN=Scale cluster CA" -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl x509 -in "$work/ca.pem" -outform DER -out "$dir/ca.cer"
else
  openssl x509 -inform DER -in "$dir/ca.cer" -out "$work/ca.pem"
fi

# The subject alternative names: IP addresses as IP entries, the rest as DNS names.
sans=()
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then sans+=("IP:$name"); else sans+=("DNS:$name"); fi
done
san=$(IFS=,; echo "${sans[*]}")
cat > "$work/node.ext" <<CONF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
CONF
openssl req -new -newkey rsa:3072 -nodes -keyout "$work/node.key" -out "$work/node.csr" -subj "/CN=scale-node" 2>/dev/null
openssl x509 -req -in "$work/node.csr" -CA "$work/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -CAserial "$work/ca.srl" \
  -out "$work/node.pem" -days "$days" -sha256 -extfile "$work/node.ext" 2>/dev/null
openssl rand -hex 24 > "$dir/password"
openssl pkcs12 -export -inkey "$work/node.key" -in "$work/node.pem" -certfile "$work/ca.pem" -name scale-node \
  -out "$dir/node.pfx" -passout "file:$dir/password"
chmod 600 "$dir/password" "$dir/node.pfx" "$dir/ca.key"
chmod 644 "$dir/ca.cer"
echo "$dir: ca.cer, node.pfx (for ${san}), password; ca.key stays with you"
