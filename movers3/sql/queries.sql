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

-- rows_count_by_state --
-- Counts and bytes per state, for `status`.
SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM movers3_objects GROUP BY state;

-- rows_done_since --
-- Rows and bytes finished in the last N seconds, for the rate and ETA in `status`.
SELECT COUNT(*), COALESCE(SUM(size), 0)
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

-- seeds_get_for_update --
-- The seed progress of one source, locked while a seed starts.
SELECT id, state, start_after FROM movers3_seeds
WHERE old_bucket = %(old_bucket)s AND old_prefix = %(old_prefix)s
FOR UPDATE;

-- seeds_insert --
-- A first seed of this source.
INSERT INTO movers3_seeds (old_bucket, old_prefix, new_bucket, new_prefix)
VALUES (%(old_bucket)s, %(old_prefix)s, %(new_bucket)s, %(new_prefix)s);

-- seeds_restart --
-- A finished seed listed again from the start (only keys not yet in the ledger get added).
UPDATE movers3_seeds
SET state = 'listing', start_after = NULL, pages = 0, listed = 0, added = 0,
    started_at = NOW(6), finished_at = NULL
WHERE id = %(id)s;

-- seeds_advance_if_forward --
-- Record a page in the same transaction as its rows; the cursor only moves forward.
UPDATE movers3_seeds
SET start_after = %(start_after)s,
    pages = pages + 1,
    listed = listed + %(listed)s,
    added = added + %(added)s
WHERE id = %(id)s AND (start_after IS NULL OR start_after < %(start_after)s);

-- seeds_finish --
-- The listing reached its end.
UPDATE movers3_seeds SET state = 'finished', finished_at = NOW(6) WHERE id = %(id)s;

-- seeds_listing_any --
-- Whether any seed is still listing (workers with --exit-when-done wait for it).
SELECT EXISTS (SELECT 1 FROM movers3_seeds WHERE state = 'listing'), EXISTS (SELECT 1 FROM movers3_seeds);

-- seeds_all --
-- Seed progress, for `status`.
SELECT old_bucket, old_prefix, state, pages, listed, added, started_at, finished_at FROM movers3_seeds ORDER BY id;

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
