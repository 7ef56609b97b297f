-- Reads for status, report, verify and delete-source.
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

-- counts_by_state --
-- Rows and bytes per state from the trigger-kept counters, for `status` (a handful of rows).
SELECT state, SUM(objects), SUM(bytes) FROM movers3_counts GROUP BY state;

-- rows_count_by_state --
-- Counts and bytes per state, and of the rows whose source was deleted, for `status --exact`.
SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM movers3_objects GROUP BY state
UNION ALL
SELECT 'source_deleted', COUNT(*), COALESCE(SUM(size), 0) FROM movers3_objects WHERE source_deleted_at IS NOT NULL;

-- rows_done_since --
-- Rows and bytes finished in the last N seconds, for the rate and ETA in `status`, with the
-- microseconds from the first of them to now and to the last of them (what the counts span).
SELECT COUNT(*), COALESCE(SUM(size), 0),
       TIMESTAMPDIFF(MICROSECOND, MIN(done_at), NOW(6)), TIMESTAMPDIFF(MICROSECOND, MIN(done_at), MAX(done_at))
FROM movers3_objects
WHERE done_at >= NOW(6) - INTERVAL %(seconds)s SECOND;

-- seeds_all --
-- Seed progress, for `status`: the current round's parts, or the seed's own totals before parts existed.
SELECT s.old_bucket, s.old_prefix, s.state, s.round, s.input,
       COALESCE(SUM(p.pages), s.pages), COALESCE(SUM(p.listed), s.listed), COALESCE(SUM(p.added), s.added),
       COALESCE(SUM(p.changed), s.changed), COALESCE(SUM(p.skipped), 0), s.vanished,
       COUNT(p.id), COALESCE(SUM(p.state = 'finished'), 0), s.started_at, s.finished_at
FROM movers3_seeds s
LEFT JOIN movers3_seed_parts p ON p.seed_id = s.id AND p.round = s.round
GROUP BY s.id
ORDER BY s.id;

-- rows_report --
-- Every row in id order, streamed for `report`.
SELECT id, old_bucket, old_key, new_bucket, new_key, state, size, attempts, last_error,
       source_etag, dest_etag, copy_method, verified_by, checksum, done_at, source_deleted_at
FROM movers3_objects
ORDER BY id;

-- rows_report_in_state --
-- The rows in one state in id order, streamed for `report --state` (served by the `claimable` index).
SELECT id, old_bucket, old_key, new_bucket, new_key, state, size, attempts, last_error,
       source_etag, dest_etag, copy_method, verified_by, checksum, done_at, source_deleted_at
FROM movers3_objects
WHERE state = %(state)s
ORDER BY id;

-- rows_failed_top_errors --
-- The commonest errors of failed rows, for `status --watch`.
SELECT last_error, COUNT(*) AS n
FROM movers3_objects
WHERE state = 'failed'
GROUP BY last_error
ORDER BY n DESC
LIMIT %(limit)s;

-- rows_done_id_range --
-- The first and last id of done rows, where `verify` draws its sample from.
SELECT MIN(id), MAX(id) FROM movers3_objects WHERE state = 'done';

-- rows_done_from --
-- The first done row at or after an id (a random point of the sample).
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag, copy_method, checksum,
       source_deleted_at
FROM movers3_objects
WHERE state = 'done' AND id >= %(id)s
ORDER BY id
LIMIT 1;

-- rows_done_page --
-- Done rows in id order after a cursor, a page at a time, for `verify --sample 0` (served by the
-- `claimable` index): no read stays open while verify writes what it found.
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag, copy_method, checksum,
       source_deleted_at
FROM movers3_objects
WHERE state = 'done' AND id > %(after)s
ORDER BY id
LIMIT %(limit)s;

-- rows_deletable_page --
-- `delete-source`: done rows of one source whose copy was verified and whose source is still there,
-- in id order from a cursor (the `deletable` index reads no row whose source is already deleted).
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag, copy_method, checksum,
       source_deleted_at
FROM movers3_objects
WHERE state = 'done' AND source_deleted_at IS NULL AND id > %(after)s
  AND verified_by IS NOT NULL
  AND old_bucket = %(bucket)s AND old_key >= %(folder)s AND old_key < %(folder_end)s
ORDER BY id
LIMIT %(limit)s;

-- rows_done_span --
-- The first and last finish of a copy, for `report --summary` (the `recently_done` index's two ends).
SELECT MIN(done_at), MAX(done_at) FROM movers3_objects;

-- rows_done_per_interval --
-- Rows and bytes finished per interval of a width (microseconds) from a start, for the rate chart of
-- `report --summary`: grouped here, so that a ledger of any size answers in a bounded number of rows.
SELECT FLOOR(TIMESTAMPDIFF(MICROSECOND, %(start)s, done_at) / %(width)s) AS slot, COUNT(*), COALESCE(SUM(size), 0)
FROM movers3_objects
WHERE done_at BETWEEN %(start)s AND %(end)s
GROUP BY slot
ORDER BY slot;

-- rows_failed_by_code --
-- Failed rows and bytes per error code, commonest first, for `report --summary`. The code is what
-- movers3.status.error_code_of finds: its pattern's first group, else the message's first clause.
SELECT code, COUNT(*) AS n, COALESCE(SUM(size), 0)
FROM (
    SELECT size,
           CASE WHEN last_error REGEXP %(pattern)s THEN REGEXP_REPLACE(last_error, %(pattern)s, '\\1')
                ELSE COALESCE(NULLIF(LEFT(SUBSTRING_INDEX(last_error, ': ', 1), 60), ''), '(no message)') END AS code
    FROM movers3_objects
    WHERE state = 'failed'
) failed
GROUP BY code
ORDER BY n DESC, code
LIMIT %(limit)s;

-- rows_failed_with_code --
-- The first few failed rows of one error code (as rows_failed_by_code finds it), for the examples of
-- `report --summary`.
SELECT old_bucket, old_key, last_error
FROM movers3_objects
WHERE state = 'failed'
  AND %(code)s = CASE WHEN last_error REGEXP %(pattern)s THEN REGEXP_REPLACE(last_error, %(pattern)s, '\\1')
                      ELSE COALESCE(NULLIF(LEFT(SUBSTRING_INDEX(last_error, ': ', 1), 60), ''), '(no message)') END
ORDER BY id
LIMIT %(limit)s;

-- rows_done_by_proof --
-- Done rows and bytes by how their copy was proved (`verified_by`), for `report --summary`.
SELECT verified_by, COUNT(*), COALESCE(SUM(size), 0)
FROM movers3_objects
WHERE state = 'done'
GROUP BY verified_by
ORDER BY verified_by;

-- rows_failed_with_error_prefix --
-- Failed rows and bytes whose error starts with a prefix: those `verify --mark-failed` set to failed.
SELECT COUNT(*), COALESCE(SUM(size), 0)
FROM movers3_objects
WHERE state = 'failed' AND last_error LIKE %(prefix)s;

-- rows_source_deleted_span --
-- Rows whose source `delete-source` removed, their bytes, and the first and last such deletion, for
-- `report --summary` (read from the `deletable` index: only such rows are visited).
SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(source_deleted_at), MAX(source_deleted_at)
FROM movers3_objects
WHERE state IN ('done', 'failed') AND source_deleted_at IS NOT NULL;

-- seeds_routes --
-- The first seeds: each source, its destination, round, state and times, and the keys the current
-- round skipped (they never become rows), for `report --summary`.
SELECT s.old_bucket, s.old_prefix, s.new_bucket, s.new_prefix, s.state, s.round, s.input, s.started_at,
       s.finished_at, COALESCE(SUM(p.skipped), 0)
FROM movers3_seeds s
LEFT JOIN movers3_seed_parts p ON p.seed_id = s.id AND p.round = s.round
GROUP BY s.id
ORDER BY s.id
LIMIT %(limit)s;

-- seeds_first_start --
-- When the first seed round started: the migration's start, for `report --summary`.
SELECT MIN(started_at) FROM movers3_seeds;
