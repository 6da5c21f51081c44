# Sourced by scripts/run for `./scripts/run --cluster N`: a PostgreSQL 15 of its own under
# ./var/pg (made once, served on a Unix socket in that dir only: nothing listens on the network
# for it), and N ignisd hosts on it, on 127.0.0.1:8080 and up (or from --listen's address and
# port up), each with its state in ./var/host-K and its host id host-K; the hello examples
# deployed once, through the first host. Ctrl-C (or a TERM to scripts/run) stops the hosts (each
# drains), then the server. docs/operations.md "More than one host".
# Expects: cd'ed to the checkout, built, images in ./var/images, $cluster the host count, $listen
# the first host's address, "$@" what goes to each ignisd (--listen taken out), and scripts/run's
# wait_exit.
# shellcheck disable=SC2154 # cluster, listen: set by scripts/run, which sources this
hosts=$cluster
case $hosts in
  [1-9]) ;;
  *) echo "usage: ./scripts/run --cluster N   (N hosts, 1 to 9)" >&2; exit 2 ;;
esac
addr=${listen%:*}
port=${listen##*:}
case $port in
  '' | *[!0-9]*) echo "ignis: --listen $listen: not ADDRESS:PORT" >&2; exit 2 ;;
esac
[ "$((port + hosts - 1))" -le 65535 ] ||
  { echo "ignis: --listen $listen: $hosts hosts need ports up to $((port + hosts - 1))" >&2; exit 2; }
bindir=/usr/lib/postgresql/15/bin
pg=$PWD/var/pg
# The server runs as the postgres user, which must pass through every directory down to its data
# dir. One it cannot pass (a checkout in /root, 0700 on Debian; ./var itself) lets that user
# through and no one else: an ACL entry granting search only, so nothing becomes listable or
# readable; said when made.
path=${PWD#/}/var
d=
set -f
old_ifs=$IFS
IFS=/
for part in $path; do
  d=$d/$part
  runuser -u postgres -- test -x "$d" && continue
  setfacl -m u:postgres:x "$d" || {
    echo "ignis: the postgres user cannot pass through $d and no ACL can be set there: make it" \
      "traversable (chmod o+x $d) or use a checkout elsewhere" >&2
    exit 1
  }
  echo "ignis: the postgres user may now pass through $d (undo: setfacl -x u:postgres $d)" >&2
done
IFS=$old_ifs
set +f
if [ ! -s "$pg/PG_VERSION" ]; then
  mkdir -p "$pg" && chown postgres:postgres "$pg" && chmod 0700 "$pg"
  # trust: the server has no TCP listener, and its socket is in its data dir (0700, postgres'),
  # which only postgres and root reach.
  runuser -u postgres -- "$bindir/initdb" -D "$pg" -A trust -U postgres -E UTF8 --locale=C \
    >var/pg.log 2>&1 || { cat var/pg.log >&2; exit 1; }
fi
# Its own process group (setsid): the terminal's Ctrl-C reaches the hosts, not the server,
# which stops after them.
setsid setpriv --reuid=postgres --regid=postgres --clear-groups -- "$bindir/postgres" -D "$pg" \
  -k "$pg" -c listen_addresses= >>var/pg.log 2>&1 &
pg_pid=$!
for _ in $(seq 100); do
  "$bindir/pg_isready" -q -h "$pg" && break
  sleep 0.1
done
"$bindir/pg_isready" -q -h "$pg" || { tail -20 var/pg.log >&2; kill -INT $pg_pid; exit 1; }
psql -X -q -h "$pg" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ignis'" |
  grep -q 1 || createdb -h "$pg" -U postgres ignis
store="host=$pg dbname=ignis user=postgres"
# The hosts' shared keys, made once: the cluster key signs the sync invocations they forward to
# each other (a host without a warm container sends it to one that has), the secrets key seals
# the secrets they share through the store.
for key in cluster secrets; do
  [ -s "var/$key.key" ] || (umask 077 && head -c 32 /dev/urandom >"var/$key.key")
done

pids=
for k in $(seq "$hosts"); do
  mkdir -p "var/host-$k" && chmod 0700 "var/host-$k"
  ./build/orchestrator/ignisd --state-dir "var/host-$k" --images-dir var/images --store "$store" \
    --host-id "host-$k" --listen "$addr:$((port + k - 1))" --cluster-key var/cluster.key \
    --secrets-key var/secrets.key "$@" &
  pids="$pids $!"
  # The first host makes the store's first admin token (the others join with none of their own):
  # the next host starts once it is in the store.
  if [ "$k" = 1 ]; then
    for _ in $(seq 100); do [ -s var/host-1/admin.token ] && break; sleep 0.1; done
  fi
done
stop_server() {
  kill -INT $pg_pid 2>/dev/null # a fast shutdown
  wait $pg_pid 2>/dev/null || true
}
trap 'kill -TERM $pids 2>/dev/null' TERM
trap '' INT
export IGNIS_URL="http://$addr:$port"
if [ -s var/host-1/admin.token ]; then
  IGNIS_TOKEN=$(cat var/host-1/admin.token)
  export IGNIS_TOKEN
  for _ in $(seq 100); do
    ./build/orchestrator/ignis version >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Once: the functions are the store's, every host runs them.
  for example in runtime-images/examples/hello-*; do
    ./build/orchestrator/ignis push "$example" >&2 || true
  done
  ./build/orchestrator/ignis hosts >&2 || true
  echo "ignis: $hosts hosts on one PostgreSQL (./var/pg), at $IGNIS_URL to" \
    "http://$addr:$((port + hosts - 1)); any host answers any request. The admin token is in" \
    "./var/host-1/admin.token:" >&2
  echo "  export IGNIS_TOKEN=\$(cat ./var/host-1/admin.token)" >&2
  echo "  IGNIS_URL=http://$addr:$((port + hosts - 1)) ./build/orchestrator/ignis invoke hello-python -d '{\"name\": \"you\"}'" >&2
  echo "  ./build/orchestrator/ignis hosts; ./build/orchestrator/ignis top --cluster --by-host" >&2
  echo "Ctrl-C stops the hosts, then the server." >&2
fi
status=0
for p in $pids; do
  wait_exit "$p" || status=$?
done
stop_server
exit $status
