-- The worker's statements: SELECT and UPDATE only, the worker role may do nothing else (a test
-- checks it). Also the other changes of a row's state: `retry`, `verify --mark-failed`, `delete-source`.
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

-- rows_claimable_lock --
-- Lock the next pending rows; rows other workers hold are skipped, not waited for, and so are the
-- rows this worker still has a copy of in flight (back to pending under it: it never holds one twice).
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, attempts, storage_class,
       upload_id, upload_source_etag, upload_part_size, upload_parts
FROM movers3_objects
WHERE state = 'pending' AND id NOT IN %(held)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- rows_claim --
-- Lease the rows locked by rows_claimable_lock to this worker under a fresh claim token; commit
-- follows at once.
UPDATE movers3_objects
SET state = 'in_progress',
    lease_owner = %(owner)s,
    claim_token = %(token)s,
    lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND,
    attempts = attempts + 1
WHERE id IN %(ids)s AND state = 'pending';

-- rows_claimed_with_token --
-- The rows a claim leased, found again when the connection dropped before its COMMIT was answered:
-- the claim landed if they are there (their attempts already count it).
SELECT id, old_bucket, old_key, new_bucket, new_key, size, source_etag, attempts - 1, storage_class,
       upload_id, upload_source_etag, upload_part_size, upload_parts
FROM movers3_objects
WHERE lease_owner = %(owner)s AND claim_token = %(token)s AND state = 'in_progress'
ORDER BY id;

-- rows_renew_if_owned --
-- Extend the lease of rows this worker still holds under the claims it made (id, token).
UPDATE movers3_objects
SET lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND
WHERE id IN %(ids)s AND (id, claim_token) IN %(claims)s AND state = 'in_progress' AND lease_owner = %(owner)s;

-- rows_finish_if_owned --
-- Record the outcome of a batch of rows (JSON array) in one statement, each under the claim it
-- came from: rows whose lease this worker lost, or that it holds under a newer claim, are left
-- alone, and the caller compares the count. A row already in its outcome's state under that same
-- claim is this very finish, committed before a dropped connection hid it: written again, alike.
-- A worker that found a newer source version (SourceChanged) records its size, ETag and LastModified.
UPDATE movers3_objects o
JOIN JSON_TABLE(%(outcomes)s, '$[*]' COLUMNS (
    id           BIGINT UNSIGNED PATH '$.id',
    state        VARCHAR(16)     PATH '$.state',
    attempts     INT UNSIGNED    PATH '$.attempts',
    size         BIGINT UNSIGNED PATH '$.size',
    source_etag  VARCHAR(128)    PATH '$.source_etag',
    source_last_modified DATETIME PATH '$.source_last_modified',
    dest_etag    VARCHAR(128)    PATH '$.dest_etag',
    copy_method  VARCHAR(32)     PATH '$.copy_method',
    verified_by  VARCHAR(32)     PATH '$.verified_by',
    checksum     VARCHAR(160)    PATH '$.checksum',
    error        VARCHAR(1024)   PATH '$.error',
    clear_upload BOOLEAN         PATH '$.clear_upload',
    token        BIGINT UNSIGNED PATH '$.token'
)) AS j ON o.id = j.id
SET o.state = j.state,
    o.attempts = j.attempts,
    o.size = COALESCE(j.size, o.size),
    o.source_etag = COALESCE(j.source_etag, o.source_etag),
    o.source_last_modified = COALESCE(j.source_last_modified, o.source_last_modified),
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
WHERE o.lease_owner = %(owner)s AND o.claim_token = j.token AND (o.state = 'in_progress' OR o.state = j.state);

-- rows_done_owned_lock --
-- Re-pointing: which of the rows about to be marked done this worker still owns (locked, so that
-- the finish that follows writes exactly these).
SELECT id, old_bucket, old_key, new_bucket, new_key
FROM movers3_objects
WHERE id IN %(ids)s AND (id, claim_token) IN %(claims)s AND state IN ('in_progress', 'done')
  AND lease_owner = %(owner)s
FOR UPDATE;

-- rows_expired_requeue --
-- Rescue rows whose worker vanished: back to pending while attempts remain.
UPDATE movers3_objects
SET state = 'pending',
    lease_owner = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    last_error = 'lease expired: the worker holding this row stopped renewing it'
WHERE state = 'in_progress' AND lease_expires_at < NOW(6) AND attempts < %(max_attempts)s
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- rows_expired_fail --
-- Rows whose worker vanished on every attempt: failed, so that a poison object can't crash-loop workers.
UPDATE movers3_objects
SET state = 'failed',
    claim_token = NULL,
    lease_expires_at = NULL,
    last_error = 'lease expired on every attempt: the workers holding this row stopped renewing it'
WHERE state = 'in_progress' AND lease_expires_at < NOW(6) AND attempts >= %(max_attempts)s
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- seeds_listing_any --
-- Whether any seed is still listing (workers with --exit-when-done wait for it).
SELECT EXISTS (SELECT 1 FROM movers3_seeds WHERE state = 'listing'), EXISTS (SELECT 1 FROM movers3_seeds);

-- rows_unfinished_any --
-- Whether any row is still pending or in progress (a worker with --exit-when-done asks).
SELECT EXISTS (SELECT 1 FROM movers3_objects WHERE state IN ('pending', 'in_progress'));

-- rows_failed_retry --
-- `movers3 retry`: failed rows back to pending with a fresh attempt budget; not those whose source
-- `delete-source` removed on purpose (nothing is left to copy them from).
UPDATE movers3_objects
SET state = 'pending', attempts = 0, lease_owner = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE state = 'failed' AND source_deleted_at IS NULL;

-- rows_failed_source_deleted --
-- Failed rows whose source `delete-source` removed: `retry` leaves them and says how many.
SELECT COUNT(*) FROM movers3_objects WHERE state = 'failed' AND source_deleted_at IS NOT NULL;

-- rows_fail_if_done --
-- `verify --mark-failed`: a done row whose copy no longer checks out goes to failed, for `retry`.
UPDATE movers3_objects
SET state = 'failed', last_error = %(error)s, done_at = NULL, claim_token = NULL
WHERE id = %(id)s AND state = 'done';

-- rows_source_deleted_if_unchanged --
-- Record a source deletion (or a source found gone) on a row that is still the version copied.
UPDATE movers3_objects
SET source_deleted_at = NOW(6), source_version_id = %(version_id)s
WHERE id = %(id)s AND state = 'done' AND source_etag = %(etag)s AND source_deleted_at IS NULL;
