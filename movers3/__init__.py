"""movers3: move every object under one S3 prefix to another, with a MariaDB ledger of each route."""

import os

__version__ = "0.1.0"

# awscrt is here for the CopyObject hot path (engine.py), which uses it directly. botocore would
# otherwise switch its own signing to awscrt too, and that signer copies every streamed part's body
# (measured: +46 MiB of peak RSS streaming 1 GiB with a 64 MiB buffer budget) and is no faster.
# It is read once, when botocore is first imported, and a user's own setting wins.
os.environ.setdefault("BOTO_DISABLE_CRT", "true")
