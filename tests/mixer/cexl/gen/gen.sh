#!/bin/sh
# Regenerate ../tests.json from Mixer's expression test table.
# Usage: gen.sh ISTIO_GIT_DIR [REF]   (REF defaults to the 1.6.9 tag)
# The table's source is copied into ilt/tests.go only for the build and removed after.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
istio=$1
ref=${2:-1.6.9}
path=mixer/pkg/il/testing/tests.go
trap 'rm -f "$here/ilt/tests.go"' EXIT
git -C "$istio" show "$ref:$path" > "$here/ilt/tests.go"
cd "$here"
GOFLAGS=-mod=mod GOPROXY=off go run . ilt/tests.go "istio/istio@$ref:$path" > ../tests.json.new
mv ../tests.json.new ../tests.json
echo "wrote $(grep -c '"index"' ../tests.json) cases to tests/mixer/cexl/tests.json" >&2
