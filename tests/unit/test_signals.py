"""signals.on_stop in a real process: a SIGTERM that arrives while the main thread writes a log line
(structlog's write lock held) is told, and the process stops. With the stop told in the handler
itself, the handler's own log line waited forever for that lock: a worker froze and was SIGKILLed."""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import io, os, signal, sys, threading
    from movers3 import logs, signals
    import structlog

    class Stream(io.StringIO):
        # SIGTERM to itself from inside PrintLogger.msg, its write lock held, once.
        sent = False

        def write(self, text):
            if not Stream.sent and "tick" in text:
                Stream.sent = True
                os.kill(os.getpid(), signal.SIGTERM)
            sys.stderr.write(text)
            return len(text)

    logs.configure(format="json", level="info", stream=Stream())
    log = structlog.get_logger("child")
    stop = threading.Event()
    with signals.on_stop(stop.set):
        log.info("tick")
        told = stop.wait(10)
    print("stopped" if told else "not told", flush=True)
    """
)


def test_a_sigterm_while_the_main_thread_logs_stops_the_process():
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "stopped\n"), result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert '"event": "tick"' in lines[0] and '"event": "stop_requested"' in lines[1], lines
    assert '"signal": "SIGTERM"' in lines[1]


def test_signals_outside_the_block_are_handled_as_before():
    child = textwrap.dedent(
        """
        import os, signal, threading
        from movers3 import signals
        with signals.on_stop(threading.Event().set):
            pass
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.set_wakeup_fd(-1) == -1
        os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=30)
    assert result.returncode == -15, result.stderr[-2000:]
