-- Named queries, loaded once by movers3.db. A block starts with `-- name --` and a one-line
-- description. Names are noun first, then the verb and its guard.

-- schema_version --
-- The ledger's schema version (one row).
SELECT version FROM movers3_schema WHERE singleton = 1;

-- schema_version_set --
-- Record the schema version after `init` has run every statement of schema.sql.
INSERT INTO movers3_schema (singleton, version) VALUES (1, %(version)s)
ON DUPLICATE KEY UPDATE version = VALUES(version);

-- rows_claimable_lock --
-- Lock the next pending rows; rows other workers hold are skipped, not waited for.
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, attempts, storage_class,
       upload_id, upload_source_etag, upload_part_size, upload_parts
FROM movers3_objects
WHERE state = 'pending'
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- rows_claim --
-- Lease the rows locked by rows_claimable_lock to this worker; commit follows at once.
UPDATE movers3_objects
SET state = 'in_progress',
    lease_owner = %(owner)s,
    lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND,
    attempts = attempts + 1
WHERE id IN %(ids)s AND state = 'pending';

-- rows_renew_if_owned --
-- Extend the lease of rows this worker still holds.
UPDATE movers3_objects
SET lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND
WHERE id IN %(ids)s AND state = 'in_progress' AND lease_owner = %(owner)s;

-- rows_finish_if_owned --
-- Record the outcome of a batch of rows (JSON array) in one statement; rows whose lease this
-- worker lost are left alone, and the caller compares the count.
UPDATE movers3_objects o
JOIN JSON_TABLE(%(outcomes)s, '$[*]' COLUMNS (
    id           BIGINT UNSIGNED PATH '$.id',
    state        VARCHAR(16)     PATH '$.state',
    attempts     INT UNSIGNED    PATH '$.attempts',
    size         BIGINT UNSIGNED PATH '$.size',
    source_etag  VARCHAR(128)    PATH '$.source_etag',
    dest_etag    VARCHAR(128)    PATH '$.dest_etag',
    copy_method  VARCHAR(32)     PATH '$.copy_method',
    verified_by  VARCHAR(32)     PATH '$.verified_by',
    checksum     VARCHAR(160)    PATH '$.checksum',
    error        VARCHAR(1024)   PATH '$.error',
    clear_upload BOOLEAN         PATH '$.clear_upload'
)) AS j ON o.id = j.id
SET o.state = j.state,
    o.attempts = j.attempts,
    o.size = COALESCE(j.size, o.size),
    o.source_etag = COALESCE(j.source_etag, o.source_etag),
    o.dest_etag = j.dest_etag,
    o.copy_method = j.copy_method,
    o.verified_by = j.verified_by,
    o.checksum = j.checksum,
    o.last_error = j.error,
    -- a finished upload is gone; an unfinished one stays recorded for the next worker to resume
    o.upload_id = IF(j.state = 'done' OR j.clear_upload, NULL, o.upload_id),
    o.upload_source_etag = IF(j.state = 'done' OR j.clear_upload, NULL, o.upload_source_etag),
    o.upload_part_size = IF(j.state = 'done' OR j.clear_upload, NULL, o.upload_part_size),
    o.upload_parts = IF(j.state = 'done' OR j.clear_upload, NULL, o.upload_parts),
    o.lease_expires_at = NULL,
    o.done_at = IF(j.state = 'done', NOW(6), NULL)
WHERE o.state = 'in_progress' AND o.lease_owner = %(owner)s;

-- rows_upload_start_if_owned --
-- Record a multipart upload (new, or restarted for a changed source) before its first part.
UPDATE movers3_objects
SET upload_id = %(upload_id)s, upload_source_etag = %(source_etag)s, upload_part_size = %(part_size)s,
    upload_parts = '[]'
WHERE id = %(id)s AND state = 'in_progress' AND lease_owner = %(owner)s;

-- rows_upload_part_if_owned --
-- Record one finished part of the row's recorded upload.
UPDATE movers3_objects
SET upload_parts = JSON_ARRAY_APPEND(upload_parts, '$', JSON_ARRAY(%(number)s, %(etag)s, %(md5)s))
WHERE id = %(id)s AND state = 'in_progress' AND lease_owner = %(owner)s AND upload_id = %(upload_id)s;

-- rows_upload_forget_if_owned --
-- The recorded upload is gone (aborted, or unknown to S3): the next attempt starts a new one.
UPDATE movers3_objects
SET upload_id = NULL, upload_source_etag = NULL, upload_part_size = NULL, upload_parts = NULL
WHERE id = %(id)s AND state = 'in_progress' AND lease_owner = %(owner)s;

-- rows_expired_requeue --
-- Rescue rows whose worker vanished: back to pending while attempts remain.
UPDATE movers3_objects
SET state = 'pending',
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = 'lease expired: the worker holding this row stopped renewing it'
WHERE state = 'in_progress' AND lease_expires_at < NOW(6) AND attempts < %(max_attempts)s
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- rows_expired_fail --
-- Rows whose worker vanished on every attempt: failed, so that a poison object can't crash-loop workers.
UPDATE movers3_objects
SET state = 'failed',
    lease_expires_at = NULL,
    last_error = 'lease expired on every attempt: the workers holding this row stopped renewing it'
WHERE state = 'in_progress' AND lease_expires_at < NOW(6) AND attempts >= %(max_attempts)s
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- rows_failed_retry --
-- `movers3 retry`: failed rows back to pending with a fresh attempt budget.
UPDATE movers3_objects
SET state = 'pending', attempts = 0, lease_owner = NULL, lease_expires_at = NULL
WHERE state = 'failed';

-- rows_insert_if_new --
-- Seed one page of listed objects; a key already in the ledger is left exactly as it is.
INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag, storage_class)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE id = id;

-- rows_known_by_old_route --
-- Which keys of a listed page the ledger already has, and the version it has of each.
SELECT old_key, new_key, size, source_etag, state
FROM movers3_objects
WHERE old_bucket = %(bucket)s AND old_key IN %(keys)s;

-- rows_known_by_new_route --
-- Rows that already own one of a page's destination keys (a second source mapped onto them).
SELECT new_key, old_bucket, old_key
FROM movers3_objects
WHERE new_bucket = %(bucket)s AND new_key IN %(keys)s;

-- rows_count_in_folder --
-- Ledger rows of one source, once per finished round: those it did not list have vanished.
SELECT COUNT(*)
FROM movers3_objects
WHERE old_bucket = %(bucket)s AND old_key >= %(folder)s AND old_key < %(folder_end)s;

-- rows_requeue_if_changed --
-- Catch-up: rows whose source was listed again with another ETag or size go back to pending as
-- the new version, whatever their state. A worker copying the old version loses its lease (its
-- guarded finish drops the result); a recorded multipart upload stays for the copier, which never
-- reuses parts of another source version. Keys travel as hex: JSON carries no raw bytes.
UPDATE movers3_objects o
JOIN JSON_TABLE(%(changes)s, '$[*]' COLUMNS (
    old_key_hex    VARCHAR(2048)   PATH '$.key',
    size           BIGINT UNSIGNED PATH '$.size',
    source_etag    VARCHAR(128)    PATH '$.etag',
    storage_class  VARCHAR(32)     PATH '$.storage_class'
)) AS j ON o.old_bucket = %(bucket)s AND o.old_key = UNHEX(j.old_key_hex)
SET o.state = 'pending',
    o.attempts = 0,
    o.lease_owner = NULL,
    o.lease_expires_at = NULL,
    o.last_error = 'source changed after it was listed; a catch-up seed queued its new version',
    o.dest_etag = NULL,
    o.copy_method = NULL,
    o.verified_by = NULL,
    o.checksum = NULL,
    o.done_at = NULL,
    o.source_deleted_at = NULL,
    o.source_version_id = NULL,
    o.storage_class = j.storage_class,
    o.size = j.size,
    o.source_etag = j.source_etag
WHERE o.size <> j.size OR o.source_etag <> j.source_etag;

-- rows_count_by_state --
-- Counts and bytes per state, for `status`.
SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM movers3_objects GROUP BY state;

-- rows_done_since --
-- Rows and bytes finished in the last N seconds, for the rate and ETA in `status`, with the
-- microseconds from the first of them to now and to the last of them (what the counts span).
SELECT COUNT(*), COALESCE(SUM(size), 0),
       TIMESTAMPDIFF(MICROSECOND, MIN(done_at), NOW(6)), TIMESTAMPDIFF(MICROSECOND, MIN(done_at), MAX(done_at))
FROM movers3_objects
WHERE done_at >= NOW(6) - INTERVAL %(seconds)s SECOND;

-- rows_unfinished_any --
-- Whether any row is still pending or in progress (a worker with --exit-when-done asks).
SELECT EXISTS (SELECT 1 FROM movers3_objects WHERE state IN ('pending', 'in_progress'));

-- rows_report --
-- Every row in id order, streamed for `report`.
SELECT id, old_bucket, old_key, new_bucket, new_key, state, size, attempts, last_error,
       source_etag, dest_etag, copy_method, verified_by, checksum, done_at
FROM movers3_objects
ORDER BY id;

-- rows_report_in_state --
-- The rows in one state in id order, streamed for `report --state` (served by the `claimable` index).
SELECT id, old_bucket, old_key, new_bucket, new_key, state, size, attempts, last_error,
       source_etag, dest_etag, copy_method, verified_by, checksum, done_at
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

-- counts_by_state --
-- Rows and bytes per state from the trigger-kept counters, for `status` (a handful of rows).
SELECT state, SUM(objects), SUM(bytes) FROM movers3_counts GROUP BY state;

-- counts_slot_create --
-- Every counter row exists before a recount, so that the recount locks them all.
INSERT IGNORE INTO movers3_counts (state, slot) VALUES (%s, %s);

-- counts_zero --
-- A recount starts from zero, holding every counter row until it commits.
UPDATE movers3_counts SET objects = 0, bytes = 0;

-- counts_recount --
-- The counters from the rows themselves (`init`): a consistent read under READ COMMITTED, so that
-- writes committed after it add their own change once this commits.
INSERT INTO movers3_counts (state, slot, objects, bytes)
SELECT state, 0, COUNT(*), COALESCE(SUM(size), 0) FROM movers3_objects GROUP BY state
ON DUPLICATE KEY UPDATE objects = VALUES(objects), bytes = VALUES(bytes);

-- seeds_get_for_update --
-- The seed progress of one source, locked while a seed starts.
SELECT id, state, start_after, round, input FROM movers3_seeds
WHERE old_bucket = %(old_bucket)s AND old_prefix = %(old_prefix)s
FOR UPDATE;

-- seeds_lock --
-- One seed locked while a part finishes, so that exactly one seeder sees the last part end.
SELECT state, round FROM movers3_seeds WHERE id = %(id)s FOR UPDATE;

-- seeds_insert --
-- A first seed of this source (ignored when another seeder inserted it first).
INSERT IGNORE INTO movers3_seeds (old_bucket, old_prefix, new_bucket, new_prefix, input)
VALUES (%(old_bucket)s, %(old_prefix)s, %(new_bucket)s, %(new_prefix)s, %(input)s);

-- seeds_new_round --
-- A finished seed (or an abandoned round) listed again: a new round with new parts.
UPDATE movers3_seeds
SET state = 'listing', round = round + 1, input = %(input)s, start_after = NULL, pages = 0, listed = 0,
    added = 0, started_at = NOW(6), finished_at = NULL
WHERE id = %(id)s;

-- seeds_finish --
-- The round's last part ended: the totals of its parts become the seed's.
UPDATE movers3_seeds s
JOIN (SELECT COALESCE(SUM(pages), 0) AS pages, COALESCE(SUM(listed), 0) AS listed,
             COALESCE(SUM(added), 0) AS added, COALESCE(SUM(changed), 0) AS changed
      FROM movers3_seed_parts WHERE seed_id = %(id)s AND round = %(round)s) AS p
SET s.state = 'finished', s.finished_at = NOW(6), s.pages = p.pages, s.listed = p.listed, s.added = p.added,
    s.changed = p.changed, s.vanished = %(vanished)s
WHERE s.id = %(id)s AND s.round = %(round)s;

-- seeds_listing_any --
-- Whether any seed is still listing (workers with --exit-when-done wait for it).
SELECT EXISTS (SELECT 1 FROM movers3_seeds WHERE state = 'listing'), EXISTS (SELECT 1 FROM movers3_seeds);

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

-- seeds_progress --
-- What the parts of one round have done so far (`seed` prints it at the end).
SELECT COALESCE(SUM(pages), 0), COALESCE(SUM(listed), 0), COALESCE(SUM(added), 0), COALESCE(SUM(changed), 0),
       COALESCE(SUM(skipped), 0), COUNT(*)
FROM movers3_seed_parts WHERE seed_id = %(seed_id)s AND round = %(round)s;

-- parts_count --
-- How many parts a round has (none yet: it must be planned).
SELECT COUNT(*) FROM movers3_seed_parts WHERE seed_id = %(seed_id)s AND round = %(round)s;

-- parts_insert --
-- Parts of a round: planned at its start, or met while listing (a sub-folder, a split of a flat
-- level); a part already known to the round is not added twice.
INSERT IGNORE INTO movers3_seed_parts (seed_id, round, part_key, prefix, after_key, upto_key, file, file_md5)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s);

-- parts_claimable_lock --
-- The next part nobody lists: never started, or its seeder stopped renewing its lease.
SELECT id, prefix, after_key, upto_key, file, file_md5, cursor_key, cursor_rows
FROM movers3_seed_parts
WHERE seed_id = %(seed_id)s AND round = %(round)s
  AND (state = 'pending' OR (state = 'listing' AND lease_expires_at < NOW(6)))
ORDER BY id
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- parts_claim --
-- Lease the part locked by parts_claimable_lock to this seeder.
UPDATE movers3_seed_parts
SET state = 'listing', owner = %(owner)s, lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND
WHERE id = %(id)s;

-- parts_advance_if_owned --
-- Record a page in the same transaction as its rows, and renew the lease.
UPDATE movers3_seed_parts
SET cursor_key = %(cursor_key)s,
    cursor_rows = cursor_rows + %(rows)s,
    pages = pages + 1,
    listed = listed + %(listed)s,
    added = added + %(added)s,
    changed = changed + %(changed)s,
    skipped = skipped + %(skipped)s,
    lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND
WHERE id = %(id)s AND state = 'listing' AND owner = %(owner)s;

-- parts_narrow_if_owned --
-- A flat level split while it is listed: this part keeps the keys up to the first new boundary.
UPDATE movers3_seed_parts
SET upto_key = %(upto_key)s
WHERE id = %(id)s AND state = 'listing' AND owner = %(owner)s;

-- parts_release_if_owned --
-- A seeder that stops hands its part back at once, cursor kept, instead of waiting for the lease.
UPDATE movers3_seed_parts
SET state = 'pending', owner = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND state = 'listing' AND owner = %(owner)s;

-- parts_finish_if_owned --
-- The part reached its end.
UPDATE movers3_seed_parts
SET state = 'finished', finished_at = NOW(6), owner = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND state = 'listing' AND owner = %(owner)s;

-- parts_unfinished --
-- Parts of the round not finished yet, and how many of those another seeder holds.
SELECT COUNT(*), COALESCE(SUM(state = 'listing' AND lease_expires_at >= NOW(6)), 0)
FROM movers3_seed_parts
WHERE seed_id = %(seed_id)s AND round = %(round)s AND state <> 'finished';

-- rows_deletable_page --
-- `delete-source`: done rows of one source whose copy was verified and whose source is still there,
-- in id order from a cursor (the `deletable` index reads no row whose source is already deleted).
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag
FROM movers3_objects
WHERE state = 'done' AND source_deleted_at IS NULL AND id > %(after)s
  AND verified_by IS NOT NULL
  AND old_bucket = %(bucket)s AND old_key >= %(folder)s AND old_key < %(folder_end)s
ORDER BY id
LIMIT %(limit)s;

-- rows_source_deleted_if_unchanged --
-- Record a source deletion (or a source found gone) on a row that is still the version copied.
UPDATE movers3_objects
SET source_deleted_at = NOW(6), source_version_id = %(version_id)s
WHERE id = %(id)s AND state = 'done' AND source_etag = %(etag)s AND source_deleted_at IS NULL;

-- repoint_prepare --
-- Check the operator's re-pointing statement on the server at start-up (syntax, tables, columns and
-- privileges), with ? for its parameters; nothing is executed.
PREPARE movers3_repoint FROM %(statement)s;

-- repoint_deallocate --
-- Drop the statement prepared by repoint_prepare.
DEALLOCATE PREPARE movers3_repoint;

-- rows_done_owned_lock --
-- Re-pointing: which of the rows about to be marked done this worker still owns (locked, so that
-- the finish that follows writes exactly these).
SELECT id, old_bucket, old_key, new_bucket, new_key
FROM movers3_objects
WHERE id IN %(ids)s AND state = 'in_progress' AND lease_owner = %(owner)s
FOR UPDATE;

-- rows_done_id_range --
-- The first and last id of done rows, where `verify` draws its sample from.
SELECT MIN(id), MAX(id) FROM movers3_objects WHERE state = 'done';

-- rows_done_from --
-- The first done row at or after an id (a random point of the sample).
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag, copy_method
FROM movers3_objects
WHERE state = 'done' AND id >= %(id)s
ORDER BY id
LIMIT 1;

-- rows_done_all --
-- Every done row in id order, streamed for `verify --sample 0`.
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag, copy_method
FROM movers3_objects
WHERE state = 'done'
ORDER BY id;

-- rows_fail_if_done --
-- `verify --mark-failed`: a done row whose copy no longer checks out goes to failed, for `retry`.
UPDATE movers3_objects
SET state = 'failed', last_error = %(error)s, done_at = NULL
WHERE id = %(id)s AND state = 'done';
