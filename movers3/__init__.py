"""movers3: move every object under one S3 prefix to another, with a MariaDB ledger of each route."""

__version__ = "0.1.0"
