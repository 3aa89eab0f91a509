"""The demo app served on localhost for a browser: the browser test (tests/test_browser.py) and
the screenshot tool (tools/screenshot_app.py). Checkout paths and a browser's flags are a
developer's harness, not the package's: ``medclass.serving`` keeps what the app itself needs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from medclass.serving import APP, ROOT

# Headless Chromium as root in a closed network (the browser test, tools/screenshot_app.py): no
# sandbox, and none of Chromium's background connections.
HEADLESS_CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@contextlib.contextmanager
def served_app(model_dir: str | Path, log: str | Path, port: int | None = None, timeout: float = 90):
    """Serve the app with ``streamlit run`` on localhost (``make app`` does the same) for as long
    as the ``with`` block lasts; yields its URL. The server's output goes to ``log``."""
    import socket

    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--",
        "--model",
        str(model_dir),
    ]
    log = Path(log)
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(OSError):
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                if server.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer in {timeout:.0f} s:\n{log.read_text()}")
                time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)
