-- The movers3 ledger (version 5 at the end of this file). Every statement is idempotent: `movers3 init`
-- runs them all, in order, on a new ledger or on one of an older version alike.
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

-- Version 3: a billion rows. Every statement below is idempotent like the ones above.
-- The source version a copy came from, when known (delete-source deletes exactly that version).
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    source_version_id VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER storage_class;
-- When `delete-source` removed (or found already gone) the source of a verified copy.
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    source_deleted_at DATETIME(6) NULL AFTER done_at;
-- (Version 3 indexed the new route here; version 4 makes that index unique, below.)
-- Serves `delete-source` (done rows whose source is still there) without reading deleted ones.
CREATE INDEX IF NOT EXISTS deletable ON movers3_objects (state, source_deleted_at, id);

-- A seed is done in rounds (a second seed is a catch-up round); each round lists its parts.
ALTER TABLE movers3_seeds ADD COLUMN IF NOT EXISTS
    round INT UNSIGNED NOT NULL DEFAULT 1 AFTER state;
-- NULL: the round lists the bucket; else the manifest (S3 Inventory or CSV) it reads instead.
ALTER TABLE movers3_seeds ADD COLUMN IF NOT EXISTS
    input VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL AFTER round;

ALTER TABLE movers3_seeds ADD COLUMN IF NOT EXISTS
    changed BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER added;
-- Rows of this source the finished round did not list (their source vanished): left as they are.
ALTER TABLE movers3_seeds ADD COLUMN IF NOT EXISTS
    vanished BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER changed;

-- Parts of a round, claimed with SKIP LOCKED by any number of seeder threads and processes. A level
-- part lists one folder level (Delimiter '/'): its files whose keys are in (after_key, upto_key]
-- ('' and NULL: unbounded) become rows, its sub-folders become parts of their own. A file part reads
-- one manifest data file. Each page's rows commit with the part's cursor and lease.
CREATE TABLE IF NOT EXISTS movers3_seed_parts (
    id               INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    seed_id          INT UNSIGNED NOT NULL,
    round            INT UNSIGNED NOT NULL,
    -- what the part covers, unique in its round: a folder met twice is listed once
    part_key         VARBINARY(2100) NOT NULL,
    prefix           VARBINARY(1024) NULL,
    after_key        VARBINARY(1024) NULL,
    upto_key         VARBINARY(1024) NULL,
    file             VARCHAR(2048) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    file_md5         VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    state            ENUM('pending', 'listing', 'finished') NOT NULL DEFAULT 'pending',
    owner            VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    lease_expires_at DATETIME(6) NULL,
    -- where a part resumes: the last listing entry committed (level) or data rows consumed (file)
    cursor_key       VARBINARY(1024) NULL,
    cursor_rows      BIGINT UNSIGNED NOT NULL DEFAULT 0,
    pages            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    listed           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    added            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    changed          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    skipped          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    finished_at      DATETIME(6) NULL,
    UNIQUE KEY part (seed_id, round, part_key),
    KEY claimable (seed_id, round, state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Version 4: fencing.
-- The claim that holds the row: a token drawn afresh for every claim, which every renewal, finish
-- and journal write must carry with the owner's name. A name can repeat (a restarted host, a copied
-- --worker-id, the same worker claiming the row again); a token does not, so a late writer of an
-- older claim is refused. NULL while no worker holds the row.
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    claim_token BIGINT UNSIGNED NULL AFTER lease_owner;
-- One row per destination object: two sources are never given one destination key, even by two
-- seeds that judged their pages at the same time. It replaces version 3's plain index; `init`
-- refuses to upgrade a ledger where a destination key already has two rows (and names how many).
CREATE UNIQUE INDEX IF NOT EXISTS one_row_per_destination ON movers3_objects (new_bucket, new_key);
DROP INDEX IF EXISTS new_route ON movers3_objects;

-- Rows and bytes per state, kept by the triggers below so that `status` never counts a billion
-- rows. Each connection adds to its own slot (CONNECTION_ID() % 16), so concurrent claimers and
-- seeders never wait on one counter row; `status` sums the slots. A slot may go negative.
CREATE TABLE IF NOT EXISTS movers3_counts (
    state    VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    slot     TINYINT UNSIGNED NOT NULL,
    objects  BIGINT NOT NULL DEFAULT 0,
    bytes    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (state, slot)
) ENGINE=InnoDB;

-- Triggers run with their definer's rights (the account that ran `movers3 init`, which needs the
-- TRIGGER privilege): seeders and workers write the counters without any grant on movers3_counts.
DELIMITER $$
CREATE OR REPLACE TRIGGER movers3_objects_count_insert AFTER INSERT ON movers3_objects FOR EACH ROW
    INSERT INTO movers3_counts (state, slot, objects, bytes)
    VALUES (NEW.state, CONNECTION_ID() % 16, 1, CAST(NEW.size AS SIGNED))
    ON DUPLICATE KEY UPDATE objects = objects + 1, bytes = bytes + VALUES(bytes)
$$
-- Besides the states, 'source_deleted' counts the rows whose source `delete-source` removed (version 5).
CREATE OR REPLACE TRIGGER movers3_objects_count_update AFTER UPDATE ON movers3_objects FOR EACH ROW
BEGIN
    IF NEW.state <> OLD.state OR NEW.size <> OLD.size THEN
        INSERT INTO movers3_counts (state, slot, objects, bytes)
        VALUES (OLD.state, CONNECTION_ID() % 16, -1, -CAST(OLD.size AS SIGNED)),
               (NEW.state, CONNECTION_ID() % 16, 1, CAST(NEW.size AS SIGNED))
        ON DUPLICATE KEY UPDATE objects = objects + VALUES(objects), bytes = bytes + VALUES(bytes);
    END IF;
    IF (NEW.source_deleted_at IS NULL) <> (OLD.source_deleted_at IS NULL) THEN
        INSERT INTO movers3_counts (state, slot, objects, bytes)
        VALUES ('source_deleted', CONNECTION_ID() % 16, IF(NEW.source_deleted_at IS NULL, -1, 1),
                IF(NEW.source_deleted_at IS NULL, -CAST(OLD.size AS SIGNED), CAST(NEW.size AS SIGNED)))
        ON DUPLICATE KEY UPDATE objects = objects + VALUES(objects), bytes = bytes + VALUES(bytes);
    END IF;
END
$$
CREATE OR REPLACE TRIGGER movers3_objects_count_delete AFTER DELETE ON movers3_objects FOR EACH ROW
    INSERT INTO movers3_counts (state, slot, objects, bytes)
    VALUES (OLD.state, CONNECTION_ID() % 16, -1, -CAST(OLD.size AS SIGNED)),
           ('source_deleted', CONNECTION_ID() % 16, -(OLD.source_deleted_at IS NOT NULL),
            -IF(OLD.source_deleted_at IS NULL, 0, CAST(OLD.size AS SIGNED)))
    ON DUPLICATE KEY UPDATE objects = objects + VALUES(objects), bytes = bytes + VALUES(bytes)
$$
DELIMITER ;

-- Version 5: a catch-up round never moves a row backwards.
-- The LastModified of the source version the row describes (UTC, to the second, as S3 keeps it): from
-- the listing or manifest that queued that version, moved on by a worker that found a newer one
-- (SourceChanged). A catch-up round queues a row again only for a version listed later than this
-- (judge.py says how a tie in one second is settled). NULL: unknown (seeded before version 5, or from a
-- manifest without dates), and any other ETag or size queues the row again, as before version 5.
ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS
    source_last_modified DATETIME NULL AFTER source_version_id;
