#!/usr/bin/env bash
# Regenerates the committed fixtures in testdata/ with the system `openssl`.
#
#   testdata/generate.sh
#
# Every run makes a NEW key, so the certificate changes (serial, key, fingerprint, dates) even
# though its subject and subject hash stay the same. The private key only ever lives in a temp dir
# and is deleted after signing: it is not committed anywhere, and nothing can be signed with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- sample-ca/anchorage-sample-root.crt ---------------------------------------------------------
# The private CA used by the README's "main job on defaults" command and by the benchmark.
# Self-signed root, ECDSA P-256 / SHA-256, 20 years (7305 days), path length unconstrained.
mkdir -p sample-ca
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve \
    -out "$work/root.key" 2>/dev/null
openssl req -new -x509 -sha256 -days 7305 \
    -key "$work/root.key" \
    -subj "/O=Anchorage Example Corp/CN=Anchorage Sample Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out sample-ca/anchorage-sample-root.crt
rm -f "$work/root.key"

openssl x509 -in sample-ca/anchorage-sample-root.crt -noout -subject -subject_hash -enddate \
    -fingerprint -sha256
