"""Names vulture can't see used: dataclass fields read through `dataclasses.asdict` (logged or
serialised whole), and methods and attributes that a library calls by name."""

# ruff: noqa: B018
from movers3.delete_source import DeleteStats
from movers3.ledger.work import Outcome
from movers3.seed.manifest import _Hashing
from movers3.seed.seeder import SeedStats
from movers3.worker.completer import Stats
from movers3.worker.metrics import _QuietHandler, _ThreadingServer
from tests.support.browser import Text
from tests.support.faultproxy import _QuietServer

DeleteStats.examined  # logged by delete_source_finished
SeedStats.round_finished  # logged by seed_finished
Stats.lost  # logged by worker_stopped
Outcome.clear_upload  # sent to rows_finish_if_owned as JSON
_Hashing.readable  # io.RawIOBase
_ThreadingServer.daemon_threads  # socketserver.ThreadingMixIn
_QuietHandler.log_message  # http.server.BaseHTTPRequestHandler
_QuietServer.handle_error  # socketserver.BaseServer
_QuietServer.request_queue_size  # socketserver.TCPServer
Text.handle_starttag  # html.parser.HTMLParser
Text.handle_endtag
Text.handle_data
