#!/bin/bash
# Instructions per request of a gRPC server under callgrind: deterministic to about 1%, unlike CPU time
# on a shared machine. One request in flight (-m 1), so the count does not depend on how calls batch.
#
#   benchmarks/profiles/callgrind_per_request.sh NAME N -- python -m benchmarks.noop_server
#   benchmarks/profiles/callgrind_per_request.sh NAME N -- python -m policy.cli serve --config benchmarks/configs/core \
#       --log-level warning --watch-interval 0 --no-autoload
#
# The server gets `--listen unix:SOCK` appended. The OPA engine (regopy) does not start under valgrind
# (its allocator aborts), so the policy server needs --no-autoload plus OPA left out of the built-ins:
# PYTHONPATH=DIR with DIR/sitecustomize.py dropping "adapters.opa" from adapters.BUILTIN_PLUGINS.
#
# API=ext_authz (the default) sends ext_authz's typical CheckRequest (benchmarks/bench_envoy.py) to
# envoy.service.auth.v3.Authorization/Check; API=native sends the native typical request
# (benchmarks/_requests.py, as bench_core's native gRPC Check) to policy.v1.Policy/Check.
set -e
API=${API:-ext_authz}
NAME=$1; N=$2; shift 3
OUT=${TMPDIR:-/tmp}/callgrind-$NAME
SOCK=$OUT.sock; rm -f $SOCK $OUT.out*
BODY=$OUT.body
python3 - "$BODY" "$API" <<'PY'
import sys
from benchmarks._grpc_load import grpc_frame
if sys.argv[2] == "native":
    from benchmarks._requests import typical_attributes
    from policy.servers.native_codec import attributes_to_proto
    from policy.v1 import policy_pb2
    request = policy_pb2.CheckRequest(attributes=attributes_to_proto(typical_attributes())).SerializeToString()
elif sys.argv[2] == "ext_authz":
    from benchmarks.bench_envoy import typical_request
    request = typical_request()
else:
    sys.exit(f"API must be ext_authz or native, not {sys.argv[2]!r}")
open(sys.argv[1], "wb").write(grpc_frame(request))
PY
case $API in
  native) METHOD=policy.v1.Policy/Check ;;
  *) METHOD=envoy.service.auth.v3.Authorization/Check ;;
esac
PYTHONMALLOC=malloc valgrind --tool=callgrind --callgrind-out-file=$OUT.out "$@" --listen unix:$SOCK > $OUT.log 2>&1 &
PID=$!
for _ in $(seq 600); do [ -S $SOCK ] && break; sleep 0.2; done
LOAD="h2load -c 1 -m 1 -d $BODY -H content-type:application/grpc -H te:trailers --base-uri unix:$SOCK
      http://localhost/$METHOD"
$LOAD -n 300 > /dev/null          # warm up (caches, first-call paths)
callgrind_control -d $PID > /dev/null
$LOAD -n $N | grep succeeded
callgrind_control -d $PID > /dev/null
kill $PID; wait $PID 2>/dev/null || true
DUMP=$(ls $OUT.out.* | sort -t. -k3 -n | sed -n 2p)
IR=$(grep -E "^(summary|totals):" $DUMP | head -1 | awk '{print $2}')
echo "$NAME: $((IR / N)) instructions per request ($DUMP)"
