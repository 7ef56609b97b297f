-- The seeder's statements: seed rounds, their parts, and the pages of rows they insert.
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

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

-- parts_claimed_by --
-- The part one claim leased, found again when the connection dropped before its COMMIT was answered.
SELECT id, prefix, after_key, upto_key, file, file_md5, cursor_key, cursor_rows
FROM movers3_seed_parts
WHERE owner = %(owner)s AND state = 'listing';

-- parts_at_if_owned --
-- Whether this claim's part already stands where a page ends (that page committed).
SELECT 1 FROM movers3_seed_parts
WHERE id = %(id)s AND state = 'listing' AND owner = %(owner)s
  AND cursor_key <=> %(cursor_key)s AND cursor_rows = %(cursor_rows)s;

-- parts_claim --
-- Lease the part locked by parts_claimable_lock to this seeder.
UPDATE movers3_seed_parts
SET state = 'listing', owner = %(owner)s, lease_expires_at = NOW(6) + INTERVAL %(lease_seconds)s SECOND
WHERE id = %(id)s;

-- parts_advance_if_owned --
-- Record a page in the same transaction as its rows, and renew the lease.
UPDATE movers3_seed_parts
SET cursor_key = %(cursor_key)s,
    cursor_rows = %(cursor_rows)s,
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
-- The part reached its end. The claim's owner stays on it, so that this finish, run again after a
-- dropped COMMIT, finds the part finished by the same claim (and counts it, as CLIENT_FOUND_ROWS does).
UPDATE movers3_seed_parts
SET state = 'finished', finished_at = COALESCE(finished_at, NOW(6)), lease_expires_at = NULL
WHERE id = %(id)s AND state IN ('listing', 'finished') AND owner = %(owner)s;

-- parts_unfinished --
-- Parts of the round not finished yet, and how many of those another seeder holds.
SELECT COUNT(*), COALESCE(SUM(state = 'listing' AND lease_expires_at >= NOW(6)), 0)
FROM movers3_seed_parts
WHERE seed_id = %(seed_id)s AND round = %(round)s AND state <> 'finished';

-- rows_insert_if_new --
-- Seed one page of listed objects. A key already in the ledger (its old route), or a new key another
-- source's row holds (the unique new route), is left exactly as it is, and the count is of the rows
-- inserted: IGNORE, as ON DUPLICATE KEY UPDATE would be counted under CLIENT_FOUND_ROWS. Every value is
-- checked before it gets here (keys of at most 1024 bytes), so IGNORE hides no truncation.
INSERT IGNORE INTO movers3_objects
    (old_bucket, old_key, new_bucket, new_key, size, source_etag, storage_class, source_last_modified)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s);

-- rows_known_by_old_route --
-- Which keys of a listed page the ledger already has, the version it has of each (with its
-- LastModified), and whether `delete-source` removed that version's source.
SELECT old_key, new_key, size, source_etag, state, source_last_modified, source_deleted_at IS NOT NULL
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
-- Catch-up: rows whose source was listed again with another ETag or size, and later than the version
-- the row describes, go back to pending as the new version, whatever their state. A version listed
-- with an earlier LastModified (an inventory older than the copy, or an older version made current
-- again when `delete-source` deleted the copied one) is left alone; the tie in one second is settled
-- as judge.newer settles it (the seeder judged the page with it: this guard is the write's own). A
-- worker copying the old version loses its lease (its guarded finish drops the result); a recorded
-- multipart upload stays for the copier, which never reuses parts of another source version. Keys
-- travel as hex: JSON carries no raw bytes.
UPDATE movers3_objects o
JOIN JSON_TABLE(%(changes)s, '$[*]' COLUMNS (
    old_key_hex    VARCHAR(2048)   PATH '$.key',
    size           BIGINT UNSIGNED PATH '$.size',
    source_etag    VARCHAR(128)    PATH '$.etag',
    storage_class  VARCHAR(32)     PATH '$.storage_class',
    last_modified  DATETIME        PATH '$.last_modified'
)) AS j ON o.old_bucket = %(bucket)s AND o.old_key = UNHEX(j.old_key_hex)
SET o.state = 'pending',
    o.attempts = 0,
    o.lease_owner = NULL,
    o.claim_token = NULL,
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
    o.source_etag = j.source_etag,
    -- listed without a date: the row keeps the date it had (a version written after it is not older)
    o.source_last_modified = COALESCE(j.last_modified, o.source_last_modified)
WHERE (o.size <> j.size OR o.source_etag <> j.source_etag)
  AND (j.last_modified IS NULL OR o.source_last_modified IS NULL
       OR j.last_modified > o.source_last_modified
       OR (j.last_modified = o.source_last_modified AND o.source_deleted_at IS NULL));
