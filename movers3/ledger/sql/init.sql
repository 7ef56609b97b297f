-- What `movers3 init` runs besides schema.sql: the schema version and the trigger-kept counters.
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

-- routes_shared --
-- Destination keys given to more than one row: `init` can't make the new route unique until an
-- operator has resolved them.
SELECT COUNT(*) FROM (
    SELECT 1 FROM movers3_objects GROUP BY new_bucket, new_key HAVING COUNT(*) > 1
) AS shared;

-- schema_version --
-- The ledger's schema version (one row).
SELECT version FROM movers3_schema WHERE singleton = 1;

-- schema_version_set --
-- Record the schema version after `init` has run every statement of schema.sql.
INSERT INTO movers3_schema (singleton, version) VALUES (1, %(version)s)
ON DUPLICATE KEY UPDATE version = VALUES(version);

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
UNION ALL
SELECT 'source_deleted', 0, COUNT(*), COALESCE(SUM(size), 0) FROM movers3_objects WHERE source_deleted_at IS NOT NULL
ON DUPLICATE KEY UPDATE objects = VALUES(objects), bytes = VALUES(bytes);
