#!/bin/sh
# scripts/check-layers passes on this tree and fails, naming the file and the rule, on copies with
# one wrong edge each: an upward include, a domain header that includes base/http.h, SQLite, libpq
# or SQL text outside records/, another folder's -internal.h, a shim that includes the controller,
# and a function over 120 lines in api/.
set -eu
src=${IGNIS_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$src/scripts/check-layers" "$src" >/dev/null || fail "check-layers fails on the tree itself"

# expect_failure NAME FILE LINE PATTERN: FILE (relative to the copy) gets LINE at its end.
expect_failure() {
  name=$1 file=$2 line=$3 pattern=$4
  rm -rf "$tmp/tree"
  mkdir "$tmp/tree"
  cp -r "$src/orchestrator" "$src/shim" "$src/runtime-images" "$tmp/tree/"
  printf '%s\n' "$line" >>"$tmp/tree/$file"
  if "$src/scripts/check-layers" "$tmp/tree" 2>"$tmp/err" >/dev/null; then
    fail "$name: check-layers passed with '$line' in $file"
  fi
  grep -q "$pattern" "$tmp/err" || fail "$name: the complaint does not name it: $(cat "$tmp/err")"
  echo "ok: $name"
}

expect_failure "base includes dispatch" orchestrator/base/util.c '#include "dispatch/dispatch.h"' \
  'orchestrator/base/util.c:.*base/ may not include dispatch/dispatch.h'
expect_failure "an upward include in angle brackets" orchestrator/base/loop.c \
  '#include <dispatch/dispatch.h>' 'orchestrator/base/loop.c:.*base/ may not include dispatch/dispatch.h'
expect_failure "records includes container" orchestrator/records/store.c \
  '#include "container/cgroup.h"' 'records/ may not include container/cgroup.h'
expect_failure "dispatch includes api" orchestrator/dispatch/pool.c '#include "api/api.h"' \
  'dispatch/ may not include api/api.h'
expect_failure "functions includes events" orchestrator/functions/registry.h \
  '#include "events/events.h"' 'functions/ may not include events/events.h'
expect_failure "api includes container" orchestrator/api/api.c '#include "container/container.h"' \
  'api/ may not include container/container.h'
expect_failure "shim includes the controller" shim/main.c '#include "dispatch/dispatch.h"' \
  'shim/main.c:.*shim/ may not include'
expect_failure "runtime code links the core" runtime-images/provided/relay.c \
  '#include "records/store.h"' 'runtime-images/provided/relay.c:.*may not include records/store.h'
expect_failure "a domain header knows HTTP" orchestrator/dispatch/dispatch.h \
  '#include "base/http.h"' 'orchestrator/dispatch/dispatch.h: only api/ and base/'
expect_failure "SQL outside records" orchestrator/events/events.c \
  'static void f(sqlite3_stmt *s);' 'orchestrator/events/events.c: only records/ speaks SQL'
expect_failure "libpq outside records" orchestrator/dispatch/pool.c '#include <libpq-fe.h>' \
  'orchestrator/dispatch/pool.c: only records/ speaks SQL'
expect_failure "SQL text outside records" orchestrator/functions/registry.c \
  'static const char q[] = "DELETE FROM functions WHERE name = ?";' \
  'orchestrator/functions/registry.c: only records/ speaks SQL'
expect_failure "another folder's internal header" orchestrator/api/metrics.c \
  '#include "dispatch/dispatch-internal.h"' 'dispatch/dispatch-internal.h is its folder'"'"'s own'
long_function=$(printf 'void api_long(void);\nvoid api_long(void)\n{\n'; i=0
  while [ $i -lt 119 ]; do printf '    ;\n'; i=$((i + 1)); done; printf '}')
expect_failure "a function over 120 lines in api/" orchestrator/api/errors.c "$long_function" \
  'orchestrator/api/errors.c:[0-9]*: 121 lines, over 120'
expect_failure "an unqualified include" orchestrator/functions/registry.c '#include "journal.h"' \
  '"journal.h" is not beside it'
