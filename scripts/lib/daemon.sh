# Sourced by benchmarks: start_ignisd [IGNISD ARGS...] starts ignisd on a free loopback port with
# a fresh state dir and the test images, waits until it answers, and sets $url, $state and
# $ignisd_pid, and exports its first admin token as $IGNIS_TOKEN (which the CLI and ignis-bench
# send); the daemons and their state go when the calling script exits. Benchmarks measure the
# daemon, not its per-token rate or per-address connection limits: those are off.
# A benchmark may start more than one (an A/B in one session): it sets $build (a build dir) and
# $images_src (the source tree whose scripts/build-images makes that build's images; default
# this one, else $build must be absolute) before each call, and keeps each one's $url, $state
# and token. A host that joins a cluster store whose first admin token exists already makes none:
# the benchmark sets $provision_token (a token of the store) and start_ignisd hands it to the
# daemon in its state dir, as the tests do (tests/integration/harness.c, provision_token).
build=${IGNIS_BUILD:-build}
started=
# A baseline for an A/B (IGNIS_BASELINE=DIR, another build's dir): sets $baseline_build (DIR,
# absolute) and $baseline_src (the source tree meson configured it from, whose images it runs).
baseline_of() {
  baseline_build=$(cd "$1" && pwd)
  baseline_src=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
    "$baseline_build/meson-info/meson-info.json")
}
stop_ignisds() {
  for d in $started; do
    kill "${d%%:*}" 2>/dev/null || true
    wait "${d%%:*}" 2>/dev/null || true
    rm -rf "${d#*:}" "${d#*:}.log"
  done
}
start_ignisd() {
  # The images' dir, absolute ($build may be another tree's build, absolute, or ours, relative);
  # built before the state dir is made, which a failed build would leave behind.
  case $build in /*) images=$build/test-state/images ;; *) images=$PWD/$build/test-state/images ;; esac
  (cd "${images_src:-.}" && IGNIS_BUILD=$build ./scripts/build-images "$build/test-state" >/dev/null)
  state=$(mktemp -d /tmp/ignis-bench.XXXXXX)
  [ -z "${provision_token:-}" ] || (umask 077 && printf '%s' "$provision_token" >"$state/admin.token")
  "$build/orchestrator/ignisd" --listen 127.0.0.1:0 --state-dir "$state" \
    --images-dir "$images" --rate-limit 0 --max-connections-per-ip 0 \
    "$@" 2>"$state.log" &
  ignisd_pid=$!
  started="$started $ignisd_pid:$state"
  # A benchmark with more to clean up sets $exit_trap, a command that calls stop_ignisds too.
  # shellcheck disable=SC2064 # the command is chosen now
  trap "${exit_trap:-stop_ignisds}" EXIT
  # A benchmark stopped by a signal cleans up too (the EXIT trap runs on exit).
  trap 'exit 130' INT TERM HUP
  port=
  for _ in $(seq 200); do
    port=$(sed -n 's/.*msg="ignisd started".* listen=[^ ]*:\([0-9]*\) .*/\1/p' "$state.log" 2>/dev/null)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { cat "$state.log" >&2; exit 1; }
  url=http://127.0.0.1:$port
  IGNIS_TOKEN=$(cat "$state/admin.token")
  export IGNIS_TOKEN
}

# push_example EXAMPLE NAME [JSON OVERRIDES]: pushes runtime-images/examples/EXAMPLE as NAME.
push_example() {
  push_dir "runtime-images/examples/$1" "$2" "${3:-{\}}"
}

# push_dir DIR NAME [JSON OVERRIDES]: pushes the function in DIR (function.json and its files)
# as NAME, with the overrides applied to a copy of its function.json.
push_dir() {
  dir="$state/fixture-$2"
  rm -rf "$dir" && cp -r "$1" "$dir"
  python3 - "$dir/function.json" "$2" "${3:-{\}}" <<'PY'
import json, sys
path, name, over = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = json.load(open(path)); m["name"] = name; m.update(over)
json.dump(m, open(path, "w"))
PY
  "$build/orchestrator/ignis" --server "$url" push "$dir" >/dev/null
}
