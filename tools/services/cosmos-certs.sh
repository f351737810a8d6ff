#!/bin/sh
# Make a private CA and a server certificate for 127.0.0.1/localhost, once, into DIR.
# Used by tools/services (natively) and by docker-compose.yml (in the cosmos container), so both
# serve the Cosmos DB server with a certificate that clients verify against DIR/ca.pem.
set -eu
dir="${1:?usage: cosmos-certs.sh DIR}"
[ -s "$dir/ca.pem" ] && [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && exit 0
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=flowcraft-dev-ca" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:cosmos\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile ext.cnf -out cert.pem 2>/dev/null
rm -f server.csr ext.cnf ca.srl
chmod 644 ca.pem cert.pem key.pem
