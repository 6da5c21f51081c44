#include "records/store.h"
#include "records/store-internal.h"

#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/log.h"
#include "records/journal.h"

/* PostgreSQL's rollup trigger: what its upsert adds to a minute's row (m) from the one it would
 * insert (excluded), past the count of invocations. */
#define PG_ROLLUP_SUMS                                                                             \
    "    errors = m.errors + excluded.errors,"                                                     \
    "    cold_starts = m.cold_starts + excluded.cold_starts,"                                      \
    "    oom_kills = m.oom_kills + excluded.oom_kills,"                                            \
    "    wall_us = m.wall_us + excluded.wall_us,"                                                  \
    "    cpu_us = m.cpu_us + excluded.cpu_us,"                                                     \
    "    billed_ms = m.billed_ms + excluded.billed_ms,"                                            \
    "    mb_ms = m.mb_ms + excluded.mb_ms,"                                                        \
    "    mem_peak_bytes = GREATEST(m.mem_peak_bytes, excluded.mem_peak_bytes),"                    \
    "    init_us = m.init_us + excluded.init_us;"

/* PostgreSQL's schema as the migrations up to usage_function_index leave SQLite's: the same
 * tables, columns (in the same order), keys and indexes, in PostgreSQL's types (bigint for every
 * INTEGER: PostgreSQL's integer is 32 bits; bytea for BLOB; double precision for REAL, which is 32
 * bits there; an identity for AUTOINCREMENT), and the usage rollup as a plpgsql trigger doing what
 * SQLite's does (booleans made integers, GREATEST for two-argument max). PostgreSQL databases
 * start from it: the history SQLite's databases went through (usage_versions rebuilt a table)
 * is not replayed. tests/unit/test_store.c compares the two schemas. */
static const char pg_baseline[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('created_at',"
    "  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'));"
    "CREATE TABLE invocations ("
    "  id TEXT PRIMARY KEY,"
    "  function TEXT NOT NULL,"
    "  version BIGINT NOT NULL,"
    "  async BIGINT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  payload BYTEA,"
    "  content_type TEXT,"
    "  idempotency_key TEXT,"
    "  attempts BIGINT NOT NULL DEFAULT 0,"
    "  max_retries BIGINT NOT NULL,"
    "  created_us BIGINT NOT NULL,"
    "  started_us BIGINT,"
    "  finished_us BIGINT,"
    "  next_attempt_us BIGINT,"
    "  result BYTEA,"
    "  error_type TEXT,"
    "  error_message TEXT,"
    "  billed_ms BIGINT,"
    "  cold BIGINT,"
    "  expires_us BIGINT NOT NULL,"
    "  token_id TEXT,"
    "  cpu_us BIGINT,"
    "  mem_peak_bytes BIGINT,"
    "  init_us BIGINT,"
    "  alias TEXT);"
    "CREATE INDEX invocations_pending ON invocations (created_us)"
    "  WHERE status IN ('queued', 'running');"
    "CREATE INDEX invocations_idempotency ON invocations (function, idempotency_key)"
    "  WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX invocations_expiry ON invocations (expires_us);"
    "CREATE TABLE functions ("
    "  name TEXT PRIMARY KEY,"
    "  current_version BIGINT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL,"
    "  service TEXT,"
    "  max_version BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX functions_service ON functions (service) WHERE service IS NOT NULL;"
    "CREATE TABLE function_versions ("
    "  name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,"
    "  version BIGINT NOT NULL,"
    "  digest TEXT NOT NULL,"
    "  manifest TEXT NOT NULL,"
    "  bundle_bytes BIGINT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  PRIMARY KEY (name, version));"
    "CREATE INDEX function_versions_digest ON function_versions (digest);"
    "CREATE TABLE usage ("
    "  id TEXT NOT NULL,"
    "  attempt BIGINT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  version BIGINT NOT NULL,"
    "  start_us BIGINT NOT NULL,"
    "  wall_us BIGINT NOT NULL,"
    "  cpu_us BIGINT NOT NULL,"
    "  mem_peak_bytes BIGINT NOT NULL,"
    "  peak_reset BIGINT NOT NULL,"
    "  memory_mb BIGINT NOT NULL,"
    "  billed_ms BIGINT NOT NULL,"
    "  gb_s DOUBLE PRECISION NOT NULL,"
    "  cold BIGINT NOT NULL,"
    "  init_us BIGINT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  oom_kills BIGINT NOT NULL,"
    "  PRIMARY KEY (id, attempt));"
    "CREATE INDEX usage_start ON usage (start_us);"
    "CREATE TABLE usage_minute ("
    "  function TEXT NOT NULL,"
    "  version BIGINT NOT NULL,"
    "  minute BIGINT NOT NULL,"
    "  invocations BIGINT NOT NULL,"
    "  errors BIGINT NOT NULL,"
    "  cold_starts BIGINT NOT NULL,"
    "  oom_kills BIGINT NOT NULL,"
    "  wall_us BIGINT NOT NULL,"
    "  cpu_us BIGINT NOT NULL,"
    "  billed_ms BIGINT NOT NULL,"
    "  mb_ms BIGINT NOT NULL,"
    "  mem_peak_bytes BIGINT NOT NULL,"
    "  init_us BIGINT NOT NULL,"
    "  PRIMARY KEY (function, minute, version));"
    "CREATE INDEX usage_minute_minute ON usage_minute (minute);"
    "CREATE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $rollup$ BEGIN"
    "  INSERT INTO usage_minute AS m (function, version, minute, invocations, errors, cold_starts,"
    "    oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
    "  VALUES (NEW.function, NEW.version, (NEW.start_us / 60000000) * 60, 1,"
    "    (NEW.status <> 'ok')::int, NEW.cold, (NEW.oom_kills > 0)::int, NEW.wall_us,"
    "    NEW.cpu_us, NEW.billed_ms, NEW.memory_mb * NEW.billed_ms, NEW.mem_peak_bytes,"
    "    NEW.init_us)"
    "  ON CONFLICT (function, minute, version) DO UPDATE SET"
    "    invocations = m.invocations + 1," PG_ROLLUP_SUMS "  RETURN NULL;"
    "END $rollup$;"
    "CREATE TRIGGER usage_rollup AFTER INSERT ON usage FOR EACH ROW"
    "  EXECUTE FUNCTION usage_rollup();"
    "CREATE TABLE event_ids ("
    "  source TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  accepted_us BIGINT NOT NULL,"
    "  PRIMARY KEY (source, id));"
    "CREATE INDEX event_ids_accepted ON event_ids (accepted_us);"
    "CREATE TABLE event_dead_letters ("
    "  seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  at_us BIGINT NOT NULL,"
    "  function TEXT,"
    "  invocation TEXT,"
    "  type TEXT NOT NULL,"
    "  source TEXT NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  event TEXT NOT NULL);"
    "CREATE INDEX event_dead_letters_at ON event_dead_letters (at_us);"
    "CREATE TABLE schedules ("
    "  function TEXT PRIMARY KEY,"
    "  schedule TEXT NOT NULL,"
    "  last_run BIGINT NOT NULL);"
    "CREATE TABLE services ("
    "  name TEXT PRIMARY KEY,"
    "  spec TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL);"
    "CREATE TABLE sink_deliveries ("
    "  id TEXT PRIMARY KEY,"
    "  function TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  time TEXT NOT NULL,"
    "  content_type TEXT,"
    "  body BYTEA,"
    "  status TEXT NOT NULL,"
    "  attempts BIGINT NOT NULL,"
    "  max_attempts BIGINT NOT NULL,"
    "  http_status BIGINT,"
    "  error TEXT,"
    "  next_attempt_us BIGINT,"
    "  created_us BIGINT NOT NULL,"
    "  finished_us BIGINT,"
    "  expires_us BIGINT NOT NULL);"
    "CREATE INDEX sink_deliveries_pending ON sink_deliveries (created_us)"
    "  WHERE status = 'pending';"
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  salt BYTEA NOT NULL,"
    "  hash BYTEA NOT NULL,"
    "  created_us BIGINT NOT NULL,"
    "  expires_us BIGINT,"
    "  revoked_us BIGINT,"
    "  created_by TEXT);"
    "CREATE TABLE audit ("
    "  seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  time_us BIGINT NOT NULL,"
    "  token_id TEXT,"
    "  token_name TEXT,"
    "  role TEXT,"
    "  action TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  function TEXT,"
    "  detail TEXT,"
    "  peer TEXT NOT NULL,"
    "  status BIGINT NOT NULL);"
    "CREATE INDEX audit_time ON audit (time_us);"
    "CREATE INDEX audit_function ON audit (function, time_us);"
    "CREATE TABLE aliases ("
    "  function TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,"
    "  alias TEXT NOT NULL,"
    "  version BIGINT NOT NULL,"
    "  weight BIGINT NOT NULL,"
    "  PRIMARY KEY (function, alias, version));";

/* In PostgreSQL's baseline already: nothing to run there. */
#define IN_PG_BASELINE ""

/* Append only: a released migration is never edited, since databases in the field already ran
 * it. Each later issue adds its tables as a new entry: one text when both engines run it, else
 * SQLite's and PostgreSQL's (.pg) side by side. */
static const struct store_migration migrations[] = {
    {"meta",
     "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
     "INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ'));",
     pg_baseline},
    {"invocations",
     /* One row per invocation. Async ones are inserted before their 202 (durable) and keep
      * their payload until they can no longer run; sync ones are recorded for status and logs.
      * Times are wall-clock microseconds. */
     "CREATE TABLE invocations ("
     "  id TEXT PRIMARY KEY,"
     "  function TEXT NOT NULL,"
     "  version INTEGER NOT NULL,"
     "  async INTEGER NOT NULL,"
     "  status TEXT NOT NULL,"
     "  payload BLOB,"
     "  content_type TEXT,"
     "  idempotency_key TEXT,"
     "  attempts INTEGER NOT NULL DEFAULT 0,"
     "  max_retries INTEGER NOT NULL,"
     "  created_us INTEGER NOT NULL,"
     "  started_us INTEGER,"
     "  finished_us INTEGER,"
     "  next_attempt_us INTEGER,"
     "  result BLOB,"
     "  error_type TEXT,"
     "  error_message TEXT,"
     "  billed_ms INTEGER,"
     "  cold INTEGER,"
     "  expires_us INTEGER NOT NULL"
     ") STRICT;"
     "CREATE INDEX invocations_pending ON invocations (created_us) "
     "  WHERE status IN ('queued', 'running');"
     "CREATE INDEX invocations_idempotency ON invocations (function, idempotency_key) "
     "  WHERE idempotency_key IS NOT NULL;"
     "CREATE INDEX invocations_expiry ON invocations (expires_us);",
     IN_PG_BASELINE},
    /* The registry (registry.c): a function points at its current version; each version
     * keeps the bundle's digest (its directory under STATE_DIR/bundles) and the manifest as
     * validated, defaults written out. Times are wall-clock microseconds. */
    {"functions",
     "CREATE TABLE functions ("
     " name TEXT PRIMARY KEY,"
     " current_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL) STRICT;"
     "CREATE TABLE function_versions ("
     " name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,"
     " version INTEGER NOT NULL,"
     " digest TEXT NOT NULL,"
     " manifest TEXT NOT NULL,"
     " bundle_bytes INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " PRIMARY KEY (name, version)) STRICT;"
     "CREATE INDEX function_versions_digest ON function_versions (digest);",
     IN_PG_BASELINE},
    /* The accountant's ledger (accountant.c): one row per invocation attempt, and a rollup per
     * function per minute kept by a trigger in the same transaction, so the rollups always sum
     * to the rows (until the rows' shorter retention purges them). Times are wall-clock
     * microseconds; `minute` is unix seconds at the minute's start; GB-s are summed as MB-ms
     * (integers: exact). */
    {"usage",
     "CREATE TABLE usage ("
     "  id TEXT NOT NULL,"
     "  attempt INTEGER NOT NULL,"
     "  function TEXT NOT NULL,"
     "  version INTEGER NOT NULL,"
     "  start_us INTEGER NOT NULL,"
     "  wall_us INTEGER NOT NULL,"
     "  cpu_us INTEGER NOT NULL,"
     "  mem_peak_bytes INTEGER NOT NULL,"
     "  peak_reset INTEGER NOT NULL,"
     "  memory_mb INTEGER NOT NULL,"
     "  billed_ms INTEGER NOT NULL,"
     "  gb_s REAL NOT NULL,"
     "  cold INTEGER NOT NULL,"
     "  init_us INTEGER NOT NULL,"
     "  status TEXT NOT NULL,"
     "  oom_kills INTEGER NOT NULL,"
     "  PRIMARY KEY (id, attempt)"
     ") STRICT;"
     "CREATE INDEX usage_start ON usage (start_us);"
     "CREATE INDEX usage_function_start ON usage (function, start_us);"
     "CREATE TABLE usage_minute ("
     "  function TEXT NOT NULL,"
     "  minute INTEGER NOT NULL,"
     "  invocations INTEGER NOT NULL,"
     "  errors INTEGER NOT NULL,"
     "  cold_starts INTEGER NOT NULL,"
     "  oom_kills INTEGER NOT NULL,"
     "  wall_us INTEGER NOT NULL,"
     "  cpu_us INTEGER NOT NULL,"
     "  billed_ms INTEGER NOT NULL,"
     "  mb_ms INTEGER NOT NULL,"
     "  mem_peak_bytes INTEGER NOT NULL,"
     "  init_us INTEGER NOT NULL,"
     "  PRIMARY KEY (function, minute)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX usage_minute_minute ON usage_minute (minute);"
     "CREATE TRIGGER usage_rollup AFTER INSERT ON usage BEGIN"
     "  INSERT INTO usage_minute (function, minute, invocations, errors, cold_starts, oom_kills,"
     "    wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  VALUES (NEW.function, (NEW.start_us / 60000000) * 60, 1, NEW.status <> 'ok', NEW.cold,"
     "    NEW.oom_kills > 0, NEW.wall_us, NEW.cpu_us, NEW.billed_ms,"
     "    NEW.memory_mb * NEW.billed_ms, NEW.mem_peak_bytes, NEW.init_us)"
     "  ON CONFLICT (function, minute) DO UPDATE SET"
     "    invocations = invocations + 1,"
     "    errors = errors + excluded.errors,"
     "    cold_starts = cold_starts + excluded.cold_starts,"
     "    oom_kills = oom_kills + excluded.oom_kills,"
     "    wall_us = wall_us + excluded.wall_us,"
     "    cpu_us = cpu_us + excluded.cpu_us,"
     "    billed_ms = billed_ms + excluded.billed_ms,"
     "    mb_ms = mb_ms + excluded.mb_ms,"
     "    mem_peak_bytes = max(mem_peak_bytes, excluded.mem_peak_bytes),"
     "    init_us = init_us + excluded.init_us;"
     "END;",
     IN_PG_BASELINE},
    /* Events (events.c): the (source, id) pairs accepted within the de-duplication window, so a
     * restart still knows them; events dead-lettered (a chain past the hop limit, an emitted
     * event that is not valid); and each schedule's last run, so runs missed while ignisd was
     * down are made up once. Times are wall-clock microseconds; `last_run` is unix seconds (the
     * slot that ran). */
    {"events",
     "CREATE TABLE event_ids ("
     "  source TEXT NOT NULL,"
     "  id TEXT NOT NULL,"
     "  accepted_us INTEGER NOT NULL,"
     "  PRIMARY KEY (source, id)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX event_ids_accepted ON event_ids (accepted_us);"
     "CREATE TABLE event_dead_letters ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  at_us INTEGER NOT NULL,"
     "  function TEXT,"
     "  invocation TEXT,"
     "  type TEXT NOT NULL,"
     "  source TEXT NOT NULL,"
     "  event_id TEXT NOT NULL,"
     "  reason TEXT NOT NULL,"
     "  event TEXT NOT NULL"
     ") STRICT;"
     "CREATE INDEX event_dead_letters_at ON event_dead_letters (at_us);"
     "CREATE TABLE schedules ("
     "  function TEXT PRIMARY KEY,"
     "  schedule TEXT NOT NULL,"
     "  last_run INTEGER NOT NULL"
     ") STRICT;",
     IN_PG_BASELINE},
    /* Services (registry.c): a service keeps its service.json as deployed; each function names
     * the service it was deployed with (NULL: pushed on its own). */
    {"services",
     "CREATE TABLE services ("
     " name TEXT PRIMARY KEY,"
     " spec TEXT NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL) STRICT;"
     "ALTER TABLE functions ADD COLUMN service TEXT;"
     "CREATE INDEX functions_service ON functions (service) WHERE service IS NOT NULL;",
     IN_PG_BASELINE},
    /* Sinks (sink.c): one row per invocation whose outcome is forwarded, with the event until it
     * is final, so pending deliveries resume after a restart. Times are wall-clock µs. */
    {"sink_deliveries",
     "CREATE TABLE sink_deliveries ("
     " id TEXT PRIMARY KEY,"
     " function TEXT NOT NULL,"
     " url TEXT NOT NULL,"
     " type TEXT NOT NULL,"
     " time TEXT NOT NULL,"
     " content_type TEXT,"
     " body BLOB,"
     " status TEXT NOT NULL,"
     " attempts INTEGER NOT NULL,"
     " max_attempts INTEGER NOT NULL,"
     " http_status INTEGER,"
     " error TEXT,"
     " next_attempt_us INTEGER,"
     " created_us INTEGER NOT NULL,"
     " finished_us INTEGER,"
     " expires_us INTEGER NOT NULL) STRICT;"
     "CREATE INDEX sink_deliveries_pending ON sink_deliveries (created_us)"
     " WHERE status = 'pending';",
     IN_PG_BASELINE},
    /* Who may do what (auth.c, audit.c): API tokens, kept only as salted hashes; the audit log
     * of changes (who, what, which function, when, from where, the status answered); and which
     * token made each invocation, so an invoker sees only its own. */
    {"auth",
     "CREATE TABLE tokens ("
     "  id TEXT PRIMARY KEY,"
     "  name TEXT NOT NULL,"
     "  role TEXT NOT NULL,"
     "  salt BLOB NOT NULL,"
     "  hash BLOB NOT NULL,"
     "  created_us INTEGER NOT NULL,"
     "  expires_us INTEGER,"
     "  revoked_us INTEGER,"
     "  created_by TEXT"
     ") STRICT;"
     "CREATE TABLE audit ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  time_us INTEGER NOT NULL,"
     "  token_id TEXT,"
     "  token_name TEXT,"
     "  role TEXT,"
     "  action TEXT NOT NULL,"
     "  path TEXT NOT NULL,"
     "  function TEXT,"
     "  detail TEXT,"
     "  peer TEXT NOT NULL,"
     "  status INTEGER NOT NULL"
     ") STRICT;"
     "CREATE INDEX audit_time ON audit (time_us);"
     "CREATE INDEX audit_function ON audit (function, time_us);"
     "ALTER TABLE invocations ADD COLUMN token_id TEXT;",
     IN_PG_BASELINE},
    /* What one invocation cost, on its record, and usage per version (accountant.c). The
     * record keeps its last attempt's figures as that attempt's ledger row has them (µs and
     * bytes); NULL on records written before this migration and before an attempt ends.
     *
     * The rollup is keyed by version too: rebuilt, with its trigger. An old rollup's minute is
     * split by the versions its ledger rows name when every row it counted is still there (as
     * many rows as invocations: the rows' shorter retention has not taken any of that minute);
     * otherwise the version cannot be known and the minute is kept whole as version 0. Either
     * way the per-function sums stay what they were. */
    {"usage_versions",
     "ALTER TABLE invocations ADD COLUMN cpu_us INTEGER;"
     "ALTER TABLE invocations ADD COLUMN mem_peak_bytes INTEGER;"
     "ALTER TABLE invocations ADD COLUMN init_us INTEGER;"
     "DROP TRIGGER usage_rollup;"
     "DROP INDEX usage_minute_minute;"
     "ALTER TABLE usage_minute RENAME TO usage_minute_old;"
     "CREATE TABLE usage_minute ("
     "  function TEXT NOT NULL,"
     "  version INTEGER NOT NULL,"
     "  minute INTEGER NOT NULL,"
     "  invocations INTEGER NOT NULL,"
     "  errors INTEGER NOT NULL,"
     "  cold_starts INTEGER NOT NULL,"
     "  oom_kills INTEGER NOT NULL,"
     "  wall_us INTEGER NOT NULL,"
     "  cpu_us INTEGER NOT NULL,"
     "  billed_ms INTEGER NOT NULL,"
     "  mb_ms INTEGER NOT NULL,"
     "  mem_peak_bytes INTEGER NOT NULL,"
     "  init_us INTEGER NOT NULL,"
     "  PRIMARY KEY (function, minute, version)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX usage_minute_minute ON usage_minute (minute);"
     "WITH complete AS ("
     "  SELECT o.function, o.minute FROM usage_minute_old o WHERE o.invocations = ("
     "    SELECT count(*) FROM usage u WHERE u.function = o.function"
     "    AND u.start_us >= o.minute * 1000000 AND u.start_us < (o.minute + 60) * 1000000))"
     "INSERT INTO usage_minute (function, version, minute, invocations, errors, cold_starts,"
     "  oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  SELECT u.function, u.version, c.minute, count(*), sum(u.status <> 'ok'), sum(u.cold),"
     "    sum(u.oom_kills > 0), sum(u.wall_us), sum(u.cpu_us), sum(u.billed_ms),"
     "    sum(u.memory_mb * u.billed_ms), max(u.mem_peak_bytes), sum(u.init_us)"
     "  FROM complete c JOIN usage u ON u.function = c.function"
     "    AND u.start_us >= c.minute * 1000000 AND u.start_us < (c.minute + 60) * 1000000"
     "  GROUP BY u.function, u.version, c.minute;"
     "INSERT INTO usage_minute (function, version, minute, invocations, errors, cold_starts,"
     "  oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  SELECT function, 0, minute, invocations, errors, cold_starts, oom_kills, wall_us, cpu_us,"
     "    billed_ms, mb_ms, mem_peak_bytes, init_us FROM usage_minute_old o WHERE NOT EXISTS ("
     "    SELECT 1 FROM usage_minute n WHERE n.function = o.function AND n.minute = o.minute);"
     "DROP TABLE usage_minute_old;"
     "CREATE TRIGGER usage_rollup AFTER INSERT ON usage BEGIN"
     "  INSERT INTO usage_minute (function, version, minute, invocations, errors, cold_starts,"
     "    oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  VALUES (NEW.function, NEW.version, (NEW.start_us / 60000000) * 60, 1, NEW.status <> 'ok',"
     "    NEW.cold, NEW.oom_kills > 0, NEW.wall_us, NEW.cpu_us, NEW.billed_ms,"
     "    NEW.memory_mb * NEW.billed_ms, NEW.mem_peak_bytes, NEW.init_us)"
     "  ON CONFLICT (function, minute, version) DO UPDATE SET"
     "    invocations = invocations + 1,"
     "    errors = errors + excluded.errors,"
     "    cold_starts = cold_starts + excluded.cold_starts,"
     "    oom_kills = oom_kills + excluded.oom_kills,"
     "    wall_us = wall_us + excluded.wall_us,"
     "    cpu_us = cpu_us + excluded.cpu_us,"
     "    billed_ms = billed_ms + excluded.billed_ms,"
     "    mb_ms = mb_ms + excluded.mb_ms,"
     "    mem_peak_bytes = max(mem_peak_bytes, excluded.mem_peak_bytes),"
     "    init_us = init_us + excluded.init_us;"
     "END;",
     IN_PG_BASELINE},
    /* Versions and aliases (registry.c): each alias of a function points at 1..4 of its
     * versions with weights summing to 100; the alias `default` (what an unqualified invocation
     * uses) always exists and its primary version is functions.current_version. max_version is
     * the highest number the function ever gave, so numbers are never reused after a prune. */
    {"aliases",
     "CREATE TABLE aliases ("
     " function TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,"
     " alias TEXT NOT NULL,"
     " version INTEGER NOT NULL,"
     " weight INTEGER NOT NULL,"
     " PRIMARY KEY (function, alias, version)) STRICT;"
     "ALTER TABLE functions ADD COLUMN max_version INTEGER NOT NULL DEFAULT 0;"
     "UPDATE functions SET max_version = (SELECT coalesce(max(v.version), 0) FROM "
     " function_versions v WHERE v.name = functions.name);"
     "INSERT INTO aliases (function, alias, version, weight)"
     " SELECT name, 'default', current_version, 100 FROM functions;",
     IN_PG_BASELINE},
    /* The alias an invocation came through (#21); NULL for a version number, and for the rows
     * from before aliases. */
    {"invocation_alias", "ALTER TABLE invocations ADD COLUMN alias TEXT;", IN_PG_BASELINE},
    /* Nothing reads ledger rows by function (usage reports read usage_minute; retention deletes
     * by start_us): the index cost every invocation a B-tree insert for no reader (#22). */
    {"usage_function_index", "DROP INDEX usage_function_start;", IN_PG_BASELINE},
    /* The async queue shared by hosts (#16, docs/architecture.md "The queue's leases and
     * fencing"): a running row's lease (the host holding it, until when), and one row per
     * (function, idempotency key), so that hosts accepting one key at once make one invocation
     * (the insert's ON CONFLICT). A key that two rows share already (accepted before this, by
     * a race) stays on the older alone. */
    {"queue_leases",
     "ALTER TABLE invocations ADD COLUMN lease_owner TEXT;"
     "ALTER TABLE invocations ADD COLUMN lease_until INTEGER;"
     "UPDATE invocations SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND EXISTS ("
     "  SELECT 1 FROM invocations o WHERE o.function = invocations.function"
     "  AND o.idempotency_key = invocations.idempotency_key AND (o.created_us < "
     "  invocations.created_us OR (o.created_us = invocations.created_us AND o.id < "
     "  invocations.id)));"
     "DROP INDEX invocations_idempotency;"
     "CREATE UNIQUE INDEX invocations_idempotency ON invocations (function, idempotency_key)"
     "  WHERE idempotency_key IS NOT NULL;",
     "ALTER TABLE invocations ADD COLUMN lease_owner TEXT;"
     "ALTER TABLE invocations ADD COLUMN lease_until BIGINT;"
     "UPDATE invocations SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND EXISTS ("
     "  SELECT 1 FROM invocations o WHERE o.function = invocations.function"
     "  AND o.idempotency_key = invocations.idempotency_key AND (o.created_us < "
     "  invocations.created_us OR (o.created_us = invocations.created_us AND o.id < "
     "  invocations.id)));"
     "DROP INDEX invocations_idempotency;"
     "CREATE UNIQUE INDEX invocations_idempotency ON invocations (function, idempotency_key)"
     "  WHERE idempotency_key IS NOT NULL;"},
    /* More than one host on one database (#16). A pushed bundle's bytes, stored once by digest
     * in chunks of about 1 MiB (bundles_store.c), so every host unpacks it into its own cache;
     * and the hosts using the database, each with its last heartbeat (hosts_store.c). Times
     * are wall-clock microseconds. */
    {"cluster",
     "CREATE TABLE bundle_chunks ("
     "  digest TEXT NOT NULL,"
     "  n INTEGER NOT NULL,"
     "  data BLOB NOT NULL,"
     "  PRIMARY KEY (digest, n)) STRICT;"
     "CREATE TABLE hosts ("
     "  host_id TEXT PRIMARY KEY,"
     "  advertise TEXT NOT NULL,"
     "  version TEXT NOT NULL,"
     "  started_at INTEGER NOT NULL,"
     "  heartbeat_at INTEGER NOT NULL) STRICT;",
     "CREATE TABLE bundle_chunks ("
     "  digest TEXT NOT NULL,"
     "  n BIGINT NOT NULL,"
     "  data BYTEA NOT NULL,"
     "  PRIMARY KEY (digest, n));"
     "CREATE TABLE hosts ("
     "  host_id TEXT PRIMARY KEY,"
     "  advertise TEXT NOT NULL,"
     "  version TEXT NOT NULL,"
     "  started_at BIGINT NOT NULL,"
     "  heartbeat_at BIGINT NOT NULL);"},
    /* An id made before the insert (inv_id_new) for the journal's inserts of rows the store
     * numbers itself: a batch the loss of a PostgreSQL server cut is run again whole
     * (journal.h), and a row it did commit is then not added twice (ON CONFLICT (rid)). NULL on
     * older rows: unique indexes let NULLs be, on both engines. */
    {"journal_row_ids",
     "ALTER TABLE audit ADD COLUMN rid TEXT;"
     "CREATE UNIQUE INDEX audit_rid ON audit (rid);"
     "ALTER TABLE event_dead_letters ADD COLUMN rid TEXT;"
     "CREATE UNIQUE INDEX event_dead_letters_rid ON event_dead_letters (rid);",
     NULL}, /* The host that ran each attempt (#16): on the ledger's rows, and in the rollup's key,
             * so that hosts sharing a PostgreSQL store never contend for one rollup row (each
             * host's journal would hold a row lock of the others' minute until its commit). Reads
             * sum over hosts, as they sum over versions. Rows from before: host ''. */
    {"usage_by_host",
     "ALTER TABLE usage ADD COLUMN host TEXT NOT NULL DEFAULT '';"
     "DROP TRIGGER usage_rollup;"
     "DROP INDEX usage_minute_minute;"
     "ALTER TABLE usage_minute RENAME TO usage_minute_old;"
     "CREATE TABLE usage_minute ("
     "  function TEXT NOT NULL,"
     "  version INTEGER NOT NULL,"
     "  minute INTEGER NOT NULL,"
     "  invocations INTEGER NOT NULL,"
     "  errors INTEGER NOT NULL,"
     "  cold_starts INTEGER NOT NULL,"
     "  oom_kills INTEGER NOT NULL,"
     "  wall_us INTEGER NOT NULL,"
     "  cpu_us INTEGER NOT NULL,"
     "  billed_ms INTEGER NOT NULL,"
     "  mb_ms INTEGER NOT NULL,"
     "  mem_peak_bytes INTEGER NOT NULL,"
     "  init_us INTEGER NOT NULL,"
     "  host TEXT NOT NULL,"
     "  PRIMARY KEY (function, minute, version, host)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX usage_minute_minute ON usage_minute (minute);"
     "INSERT INTO usage_minute SELECT function, version, minute, invocations, errors,"
     "  cold_starts, oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us, ''"
     "  FROM usage_minute_old;"
     "DROP TABLE usage_minute_old;"
     "CREATE TRIGGER usage_rollup AFTER INSERT ON usage BEGIN"
     "  INSERT INTO usage_minute (function, version, minute, host, invocations, errors,"
     "    cold_starts, oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  VALUES (NEW.function, NEW.version, (NEW.start_us / 60000000) * 60, NEW.host, 1,"
     "    NEW.status <> 'ok', NEW.cold, NEW.oom_kills > 0, NEW.wall_us, NEW.cpu_us,"
     "    NEW.billed_ms, NEW.memory_mb * NEW.billed_ms, NEW.mem_peak_bytes, NEW.init_us)"
     "  ON CONFLICT (function, minute, version, host) DO UPDATE SET"
     "    invocations = invocations + 1,"
     "    errors = errors + excluded.errors,"
     "    cold_starts = cold_starts + excluded.cold_starts,"
     "    oom_kills = oom_kills + excluded.oom_kills,"
     "    wall_us = wall_us + excluded.wall_us,"
     "    cpu_us = cpu_us + excluded.cpu_us,"
     "    billed_ms = billed_ms + excluded.billed_ms,"
     "    mb_ms = mb_ms + excluded.mb_ms,"
     "    mem_peak_bytes = max(mem_peak_bytes, excluded.mem_peak_bytes),"
     "    init_us = init_us + excluded.init_us;"
     "END;",
     "ALTER TABLE usage ADD COLUMN host TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE usage_minute ADD COLUMN host TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE usage_minute DROP CONSTRAINT usage_minute_pkey;"
     "ALTER TABLE usage_minute ADD PRIMARY KEY (function, minute, version, host);"
     "CREATE OR REPLACE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $rollup$ BEGIN"
     "  INSERT INTO usage_minute AS m (function, version, minute, host, invocations, errors,"
     "    cold_starts, oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  VALUES (NEW.function, NEW.version, (NEW.start_us / 60000000) * 60, NEW.host, 1,"
     "    (NEW.status <> 'ok')::int, NEW.cold, (NEW.oom_kills > 0)::int, NEW.wall_us,"
     "    NEW.cpu_us, NEW.billed_ms, NEW.memory_mb * NEW.billed_ms, NEW.mem_peak_bytes,"
     "    NEW.init_us)"
     "  ON CONFLICT (function, minute, version, host) DO UPDATE SET"
     "    invocations = m.invocations + 1," PG_ROLLUP_SUMS "  RETURN NULL;"
     "END $rollup$;"},
    /* Secrets shared by the hosts of one PostgreSQL store (#16, secrets_store.c): each value
     * sealed with AES-256-GCM under the hosts' secrets_key (a 96-bit nonce; the ciphertext ends
     * with the 16-byte tag), never in the clear. Empty on SQLite, whose secrets are files. */
    {"secrets",
     "CREATE TABLE secrets ("
     "  function TEXT NOT NULL,"
     "  name TEXT NOT NULL,"
     "  nonce BLOB NOT NULL,"
     "  ciphertext BLOB NOT NULL,"
     "  updated_us INTEGER NOT NULL,"
     "  PRIMARY KEY (function, name)) STRICT;",
     "CREATE TABLE secrets ("
     "  function TEXT NOT NULL,"
     "  name TEXT NOT NULL,"
     "  nonce BYTEA NOT NULL,"
     "  ciphertext BYTEA NOT NULL,"
     "  updated_us BIGINT NOT NULL,"
     "  PRIMARY KEY (function, name));"},
    /* What each host tells its peers of itself with its heartbeat (#17, hosts_store.h): its
     * containers ready and busy, the memory their limits take of its budget, and the attempts
     * it ended per second lately. */
    {"host_figures",
     "ALTER TABLE hosts ADD COLUMN containers_ready INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN containers_busy INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN memory_used INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN memory_budget INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN invocations_per_s REAL NOT NULL DEFAULT 0;",
     "ALTER TABLE hosts ADD COLUMN containers_ready BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN containers_busy BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN memory_used BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN memory_budget BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE hosts ADD COLUMN invocations_per_s DOUBLE PRECISION NOT NULL DEFAULT 0;"},
    /* Which functions each host has a warm, free container for (#17, hosts_store.h): a row
     * while it has one, written when that changes (not at every invocation), so a host without
     * one forwards a sync invocation to a host that has. */
    {"warm_capacity",
     "CREATE TABLE warm_capacity ("
     "  host_id TEXT NOT NULL,"
     "  function TEXT NOT NULL,"
     "  PRIMARY KEY (host_id, function)) STRICT;",
     "CREATE TABLE warm_capacity ("
     "  host_id TEXT NOT NULL,"
     "  function TEXT NOT NULL,"
     "  PRIMARY KEY (host_id, function));"},
    /* A drain asked for on any host (#17, hosts_store_request_drain): kept in the host's row, so
     * that one whose listener missed the notification still finds it when it reads again. */
    {"host_drain", "ALTER TABLE hosts ADD COLUMN drain_requested INTEGER NOT NULL DEFAULT 0;",
     "ALTER TABLE hosts ADD COLUMN drain_requested BIGINT NOT NULL DEFAULT 0;"},
    /* PostgreSQL's rollup once per statement over the rows it inserted (a transition table),
     * where a row's trigger upserted the minute's rollup row once per ledger row: the journal
     * writes a batch's ledger rows in one statement there (journal_submit_row), and a rollup row
     * gets one upsert per batch (docs/performance.md "The ledger's rows in one statement a
     * batch"). SQLite keeps its row trigger (in-process: a statement costs no round trip). */
    {"usage_rollup_per_statement", "",
     "DROP TRIGGER usage_rollup ON usage;"
     "CREATE OR REPLACE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $rollup$ BEGIN"
     "  INSERT INTO usage_minute AS m (function, version, minute, host, invocations, errors,"
     "    cold_starts, oom_kills, wall_us, cpu_us, billed_ms, mb_ms, mem_peak_bytes, init_us)"
     "  SELECT function, version, (start_us / 60000000) * 60, host, count(*),"
     "    sum((status <> 'ok')::int), sum(cold), sum((oom_kills > 0)::int), sum(wall_us),"
     "    sum(cpu_us), sum(billed_ms), sum(memory_mb * billed_ms), max(mem_peak_bytes),"
     "    sum(init_us)"
     "  FROM inserted GROUP BY 1, 2, 3, 4"
     "  ON CONFLICT (function, minute, version, host) DO UPDATE SET"
     "    invocations = m.invocations + excluded.invocations," PG_ROLLUP_SUMS "  RETURN NULL;"
     "END $rollup$;"
     "CREATE TRIGGER usage_rollup AFTER INSERT ON usage REFERENCING NEW TABLE AS inserted"
     "  FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup();"},
};

int store_space_check(const char *dir, struct ig_error *err)
{
    struct statvfs st;
    if (statvfs(dir, &st) < 0)
        return ig_error_set(err, errno, "state dir %s: %s", dir, strerror(errno));
    /* f_bavail: what is left past the blocks reserved for root (ext4's 5%): a write may still
     * succeed as root, but the disk is full for every practical purpose. */
    if (st.f_bavail == 0)
        return ig_error_set(err, ENOSPC, "state dir %s: no space left on device", dir);
    return 0;
}

const struct store_migration *store_migrations(size_t *ret_n)
{
    *ret_n = ARRAY_SIZE(migrations);
    return migrations;
}

int store_schema_version(void)
{
    return (int)ARRAY_SIZE(migrations);
}

static int refuse_newer(int version, size_t n, struct ig_error *err)
{
    return ig_error_set(err, EPROTO,
                        "database schema version %d is newer than this ignisd supports (%zu); "
                        "refusing to downgrade: run a newer ignisd or restore a backup",
                        version, n);
}

/* The advisory lock hosts migrating one PostgreSQL database take in turn ("ignis" in ASCII):
 * released when the migrating transaction ends. */
#define MIGRATION_LOCK_KEY INT64_C(0x69676e6973)

/* Begins the transaction that migrates from the version it returns in *ret_version, after the
 * turn of any other host migrating the same database (on PostgreSQL; SQLite's BEGIN IMMEDIATE
 * already waits for the writer before it). 0 or -errno, db_fail saying why. */
static int begin_migration(struct db *db, int *ret_version)
{
    const struct db_value key[] = {DV_I(MIGRATION_LOCK_KEY)};
    int r = db_begin(db, NULL);
    if (r == 0 && db_on_postgresql(db))
        r = db_exec(db, "SELECT pg_advisory_xact_lock($1)", key, ARRAY_SIZE(key), NULL);
    if (r >= 0)
        r = db_user_version(db, ret_version, NULL);
    return r < 0 ? r : 0;
}

int store_migrate(struct db *db, const struct store_migration *list, size_t n, struct ig_error *err)
{
    int version;
    struct ig_error e = {};

    if (db_user_version(db, &version, &e) < 0)
        return ig_error_set(err, EIO, "reading schema version: %s", e.message);
    if (version > (int)n)
        return refuse_newer(version, n, err);
    bool pg = db_on_postgresql(db);
    while ((size_t)version < n) {
        /* Read again inside the transaction: another host may have migrated meanwhile. */
        if (begin_migration(db, &version) < 0) {
            int r = db_fail(db, err, "starting a migration");
            db_rollback(db);
            return r;
        }
        if (version >= (int)n) {
            db_rollback(db);
            return version > (int)n ? refuse_newer(version, n, err) : 0;
        }
        const struct store_migration *m = &list[version];
        const char *sql = pg && m->pg ? m->pg : m->sql;
        if ((*sql && db_exec_script(db, sql, NULL) < 0) ||
            db_set_user_version(db, version + 1, NULL) < 0 || db_commit(db, NULL) < 0) {
            int r = db_fail(db, err, "migration %d (%s) failed", version + 1, m->name);
            db_rollback(db);
            return r;
        }
        version++;
        log_info("store migrated", "version=%d migration=%s", version, m->name);
    }
    return 0;
}

void store_set_journal(struct store *s, struct journal *j)
{
    s->journal = j;
}

void store_settle(struct store *s)
{
    if (s->journal)
        journal_settle(s->journal);
}

void store_free(struct store *s)
{
    if (!s)
        return;
    db_close(s->lock_trier);
    db_close(s->db);
    free(s);
}

int store_open(const char *path, struct store **ret, struct ig_error *err)
{
    struct store *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return ig_error_set(err, ENOMEM, "out of memory");
    snprintf(s->path, sizeof(s->path), "%s", path);
    r = db_open(path, DB_CREATE, &s->db, err);
    if (r < 0) {
        store_free(s);
        return r;
    }
    r = store_migrate(s->db, migrations, ARRAY_SIZE(migrations), err);
    /* PostgreSQL: the migrations ran on a connection that waits for them as long as they take;
     * the event loop's waits DB_ANSWER_TIMEOUT_MS at most for an answer (db.h). */
    struct db *loop_db;
    if (r == 0 && db_on_postgresql(s->db) && (r = db_open(path, 0, &loop_db, err)) == 0) {
        db_close(s->db);
        s->db = loop_db;
    }
    if (r < 0) {
        /* A conninfo may hold a password: the PostgreSQL engine's own errors name the database. */
        ig_error_prefix(err, "%s", db_is_postgresql(path) ? "the PostgreSQL store" : path);
        store_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

int store_probe(const char *path, int *ret_version, struct ig_error *err)
{
    struct db *db;
    int version, r;

    if (!db_is_postgresql(path) && access(path, F_OK) < 0 && errno == ENOENT) {
        *ret_version = 0;
        return 0;
    }
    r = db_open(path, DB_READONLY, &db, err);
    if (r < 0)
        return r;
    r = db_user_version(db, &version, err);
    db_close(db);
    if (r < 0)
        return r;
    *ret_version = version;
    return 0;
}
