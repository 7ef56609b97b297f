-- What `movers3 check` asks the server about the ledger's own account and session.
-- Loaded once by movers3.ledger.db: a block starts with `-- name --` and a one-line description;
-- names are noun first, then the verb and its guard.

-- account_who --
-- The account the server took this session for (whose grants apply: not always the user name given)
-- and the server's version.
SELECT CURRENT_USER(), VERSION();

-- account_grants --
-- This session's grants: the account's own and those of its enabled role (plain SHOW GRANTS shows
-- both on MariaDB; FOR CURRENT_USER would leave the role's out).
SHOW GRANTS;

-- account_tls --
-- Whether this session is encrypted: the cipher and protocol, both empty when it is not.
SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_cipher', 'Ssl_version');
