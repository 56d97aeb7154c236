#!/bin/bash
# Three `elliott serve` replicas behind HAProxy with the shipped configuration
# (deploy/haproxy/elliott.cfg, its addresses replaced by loopback ports): 300
# requests from 20 clients while one replica is drained (SIGTERM) and another
# killed (SIGKILL); the checks are in loadbalancer_client.py. Needs haproxy
# (scripts/install-deps.sh --test); without it the test is skipped.
# usage: bash tests/e2e/loadbalancer.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
ROOT=$(cd "$E2E_DIR/../.." && pwd)
CFG_SRC=$ROOT/deploy/haproxy/elliott.cfg
HAPROXY=$(command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; })
if [ -z "$HAPROXY" ]; then
    echo "SKIP: haproxy is not installed (bash scripts/install-deps.sh --test)"
    exit 0
fi
TMP=$(mktemp -d)
LB_PID=
stop_all() {
    [ -n "$LB_PID" ] && kill -KILL "$LB_PID" 2>/dev/null
    cleanup_servers
    rm -rf "$TMP"
}
trap stop_all EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Three replicas of the built-in model, one thread each (the CI machine may
# have two cores), and the four slots HAProxy's maxconn 4 assumes.
names=(elliott1 elliott2 elliott3)
declare -A REPLICA_PID REPLICA_PORT
for n in "${names[@]}"; do
    start_server "$TMP/$n.log" -t 1 --parallel 4 --max-queue 16 --grace-ms 20000
    wait_ready || exit 1
    REPLICA_PID[$n]=$SERVER_PID
    REPLICA_PORT[$n]=$PORT
done

# nginx (deploy/nginx/elliott.conf), when installed: a smoke test only (nginx is the
# documented alternative): it proxies, streams, and keeps a conversation header on one replica.
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
if [ -n "$NGINX" ]; then
    NGINX_PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    sed -e "s/^\(    listen \)8080;$/\1127.0.0.1:$NGINX_PORT;/" \
        -e "s/10\.0\.0\.11:8080/127.0.0.1:${REPLICA_PORT[elliott1]}/" \
        -e "s/10\.0\.0\.12:8080/127.0.0.1:${REPLICA_PORT[elliott2]}/" \
        -e "s/10\.0\.0\.13:8080/127.0.0.1:${REPLICA_PORT[elliott3]}/" \
        "$ROOT/deploy/nginx/elliott.conf" > "$TMP/nginx/elliott.conf"
    [ "$(grep -c '127\.0\.0\.1:' "$TMP/nginx/elliott.conf")" = 4 ] || fail "nginx: nothing to substitute"
    cat > "$TMP/nginx/nginx.conf" <<NGINX_EOF
pid $TMP/nginx/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    include $TMP/nginx/elliott.conf;
}
NGINX_EOF
    "$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -e stderr -g 'daemon off;' > "$TMP/nginx.log" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 1 50); do
        curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/health" && break
        sleep 0.1
    done
    served=()
    for key in a b c d a b c d; do
        served+=("$key=$(curl -s -o /dev/null -D - "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" \
            -H 'Content-Type: application/json' -H "X-Conversation-Id: conv-$key" \
            -d '{"messages":[{"role":"user","content":"Once"}],"max_tokens":8}' |
            tr -d '\r' | sed -n 's/^[Xx]-[Ss]erved-[Bb]y: //p')")
    done
    for i in 0 1 2 3; do
        [ "${served[$i]}" = "${served[$((i + 4))]}" ] && [ "${served[$i]#*=}" != "" ] ||
            { fail "nginx: a conversation moved or got no answer: ${served[*]}"; break; }
    done
    curl -sN "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" -H 'Content-Type: application/json' \
        -d '{"messages":[{"role":"user","content":"Once"}],"max_tokens":8,"stream":true}' |
        grep -q '^data: \[DONE\]' || fail "nginx: a stream did not come through whole"
    echo "nginx: conversations served by ${served[*]}"
    kill -TERM "$NGINX_PID"; wait "$NGINX_PID"
else
    echo "SKIP: nginx is not installed: deploy/nginx/elliott.conf not checked"
fi

# The shipped file, with the test's addresses, run unprivileged in the foreground.
LB_PORT=$(free_port)
sed -e "s/^\(    bind \):8080$/\1127.0.0.1:$LB_PORT/" \
    -e '/# privileged$/d' \
    -e "s/10\.0\.0\.11:8080/127.0.0.1:${REPLICA_PORT[elliott1]}/" \
    -e "s/10\.0\.0\.12:8080/127.0.0.1:${REPLICA_PORT[elliott2]}/" \
    -e "s/10\.0\.0\.13:8080/127.0.0.1:${REPLICA_PORT[elliott3]}/" \
    "$CFG_SRC" > "$TMP/haproxy.cfg"
[ "$(grep -c '127\.0\.0\.1:' "$TMP/haproxy.cfg")" = 4 ] ||
    { fail "the shipped configuration no longer has one bind line and three server lines to substitute"; exit 1; }
"$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || { fail "haproxy rejects the configuration"; exit 1; }
"$HAPROXY" -db -f "$TMP/haproxy.cfg" > "$TMP/haproxy.log" 2>&1 &
LB_PID=$!
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LB_PORT/health")" = 200 ] && break
    sleep 0.1
done
# /health passes through to a replica; the balancer's own 503 would mean no server is up.
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LB_PORT/health")" = 200 ] ||
    { fail "no answer through haproxy"; cat "$TMP/haproxy.log" >&2; exit 1; }

replicas=()
for n in "${names[@]}"; do replicas+=(--replica "$n=${REPLICA_PID[$n]}"); done
timeout 170 python3 "$E2E_DIR/loadbalancer_client.py" --port "$LB_PORT" "${replicas[@]}" \
    --requests 300 --clients 20 > "$TMP/client.out" || {
    fail "load balancer checks (haproxy log tail below)"
    tail -n 30 "$TMP/haproxy.log" >&2
}
cat "$TMP/client.out"
roles=$(sed -n 's/^ROLES //p' "$TMP/client.out")
[ -n "$roles" ] || { fail "the client did not say which replica it signalled"; exit 1; }
eval "$roles"   # drained=NAME killed=NAME survivor=NAME

# The drained replica exits by itself, cleanly, once its streams are over.
pid=${REPLICA_PID[$drained]}
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    fail "$drained still runs 30 s after SIGTERM"
else
    wait "$pid"; rc=$?
    [ $rc = 0 ] || fail "$drained exited with status $rc after SIGTERM"
fi
SERVER_PID=${REPLICA_PID[$survivor]}
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status of $survivor after SIGTERM: $SERVER_RC"
for n in "${names[@]}"; do check_log "$TMP/$n.log"; done
retried=$(grep -c '/+[0-9]' "$TMP/haproxy.log")
echo "haproxy: $(grep -c 'POST /v1/chat' "$TMP/haproxy.log") completions logged, $retried redispatched"
exit $FAILED
