-- The multipart upload journal, written from copy and part threads; guarded by the row's claim.
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

-- rows_upload_start_if_owned --
-- Record a multipart upload (new, or restarted for a changed source) before its first part.
UPDATE movers3_objects
SET upload_id = %(upload_id)s, upload_source_etag = %(source_etag)s, upload_part_size = %(part_size)s,
    upload_parts = '[]'
WHERE id = %(id)s AND state = 'in_progress' AND lease_owner = %(owner)s AND claim_token = %(token)s;

-- rows_upload_part_if_owned --
-- Record one finished part of the row's recorded upload.
UPDATE movers3_objects
SET upload_parts = JSON_ARRAY_APPEND(upload_parts, '$', JSON_ARRAY(%(number)s, %(etag)s, %(md5)s))
WHERE id = %(id)s AND state = 'in_progress' AND lease_owner = %(owner)s AND claim_token = %(token)s AND upload_id = %(upload_id)s;

-- rows_upload_forget_if_owned --
-- The recorded upload is gone (aborted, or unknown to S3): the next attempt starts a new one.
UPDATE movers3_objects
SET upload_id = NULL, upload_source_etag = NULL, upload_part_size = NULL, upload_parts = NULL
WHERE id = %(id)s AND state = 'in_progress' AND lease_owner = %(owner)s AND claim_token = %(token)s;
