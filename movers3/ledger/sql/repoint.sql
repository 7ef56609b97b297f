-- Checks of the operator's re-pointing statement (REPOINT_SQL_FILE).
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

-- repoint_prepare --
-- Check the operator's re-pointing statement on the server at start-up (syntax, tables, columns and
-- privileges), with ? for its parameters; nothing is executed.
PREPARE movers3_repoint FROM %(statement)s;

-- repoint_deallocate --
-- Drop the statement prepared by repoint_prepare.
DEALLOCATE PREPARE movers3_repoint;
