#!/usr/bin/env bash
# Regenerates the interop TLS test credentials in this directory (openssl):
#
#   ca.pem        a self-signed test CA ("ferrogrpc interop test CA"); its key
#                 is thrown away once server1.pem is signed
#   server1.pem   the server certificate, signed by that CA, for
#                 *.test.google.fr (the interop suite's --server_host_override
#                 default), localhost, 127.0.0.1 and ::1
#   server1.key   its private key (PKCS#8, unencrypted)
#
# These are TEST credentials, published on purpose: never trust ca.pem
# outside tests. run-cross.sh uses them with USE_TLS=1.
set -euo pipefail
cd "$(dirname "$0")"
DAYS=${DAYS:-3650}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$DAYS" \
  -keyout "$work/ca.key" -out ca.pem -subj "/CN=ferrogrpc interop test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 \
  -keyout server1.key -out "$work/server1.csr" -subj "/CN=*.test.google.fr" 2>/dev/null

cat > "$work/ext.cnf" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:*.test.google.fr,DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -sha256 -days "$DAYS" -in "$work/server1.csr" \
  -CA ca.pem -CAkey "$work/ca.key" -CAcreateserial -CAserial "$work/ca.srl" \
  -extfile "$work/ext.cnf" -out server1.pem 2>/dev/null

openssl verify -CAfile ca.pem server1.pem
