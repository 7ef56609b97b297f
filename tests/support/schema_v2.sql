-- The ledger schema of version 2 (movers3 at 702b786), kept to test the upgrade by `movers3 init`.
-- The movers3 ledger, version 1. Every statement is idempotent: `movers3 init` runs them all.
-- Keys are VARBINARY so that they compare as the exact bytes S3 uses (case, trailing spaces and
-- Unicode normalisation all count); buckets are ASCII with a binary collation for the same reason.

CREATE TABLE IF NOT EXISTS movers3_schema (
    singleton   TINYINT UNSIGNED NOT NULL PRIMARY KEY DEFAULT 1,
    version     INT UNSIGNED NOT NULL,
    updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    CONSTRAINT movers3_schema_one_row CHECK (singleton = 1)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS movers3_objects (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    old_bucket        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    old_key           VARBINARY(1024) NOT NULL,
    new_bucket        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    new_key           VARBINARY(1024) NOT NULL,
    size              BIGINT UNSIGNED NOT NULL,
    source_etag       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    state             ENUM('pending', 'in_progress', 'done', 'failed') NOT NULL DEFAULT 'pending',
    attempts          INT UNSIGNED NOT NULL DEFAULT 0,
    lease_owner       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    lease_expires_at  DATETIME(6) NULL,
    last_error        VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    dest_etag         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    copy_method       VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    verified_by       VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at        DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at        DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    done_at           DATETIME(6) NULL,
    UNIQUE KEY old_route (old_bucket, old_key),
    -- serves the claim (state = 'pending' ORDER BY id) without reading done rows
    KEY claimable (state, id),
    -- serves the rescuer (state = 'in_progress' AND lease_expires_at < now)
    KEY leases (state, lease_expires_at),
    -- serves the rate shown by `status` (rows done in the last minute)
    KEY recently_done (done_at)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS movers3_seeds (
    id              INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    old_bucket      VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    old_prefix      VARBINARY(1024) NOT NULL,
    new_bucket      VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    new_prefix      VARBINARY(1024) NOT NULL,
    state           ENUM('listing', 'finished') NOT NULL DEFAULT 'listing',
    -- the last key inserted: a crashed seed resumes the listing after it
    start_after     VARBINARY(1024) NULL,
    pages           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    listed          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    added           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    started_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    finished_at     DATETIME(6) NULL,
    UNIQUE KEY source (old_bucket, old_prefix)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Version 2: what large copies and faithful copies need. Each column is added once, to a new
-- ledger or to an upgraded version-1 ledger alike.
-- The source's storage class, from the listing: carried to the destination, counted by `plan`.
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    storage_class VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER source_etag;
-- A multipart upload under way for this row, recorded before its first part so that a worker that
-- dies mid-object leaves something the next one resumes (the worker role may not abort uploads).
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    upload_id VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER verified_by;
-- The source version the upload's parts come from: parts of another version are never reused.
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    upload_source_etag VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER upload_id;
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    upload_part_size BIGINT UNSIGNED NULL AFTER upload_source_etag;
-- Finished parts as a JSON array of [part number, ETag, MD5 or null].
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    upload_parts MEDIUMTEXT CHARACTER SET ascii COLLATE ascii_bin NULL AFTER upload_part_size;
-- The value that proved the copy (e.g. md5:<hex>), beside how it was proved (verified_by).
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    checksum VARCHAR(160) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER verified_by;
