"""The API load generator against a stand-in HTTP server, and the API measurement's skips."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from utils.bench import api_load
from utils.bench.api_load import free_port, load_test, measure_api
from utils.bench.outcome import BenchOptions


class _Handler(BaseHTTPRequestHandler):
    """Answers 200 to every other POST and 503 to the rest, after reading the body."""

    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).count += 1
            status = 200 if self.count % 2 else 503
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.count = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_load_test_counts_statuses_and_times_only_successes(server: str) -> None:
    latencies, statuses, wall = load_test(server, b"\x89PNG fake", clients=3, seconds=0.5)
    assert statuses[200] >= 1 and statuses[503] >= 1
    assert sum(statuses.values()) == _Handler.count
    assert len(latencies) == statuses[200]
    assert all(0 < latency <= wall for latency in latencies)


def test_load_test_reports_connection_errors_by_type() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    latencies, statuses, _wall = load_test(url, b"x", clients=1, seconds=0.2)
    assert latencies == []
    assert statuses["ConnectError"] >= 1


def test_measure_api_without_a_segmenter_is_null_with_the_reason(tmp_path: Path) -> None:
    outcome = measure_api(BenchOptions(models_dir=tmp_path))
    assert outcome.results == {"api_rps": None, "api_p95_ms": None}
    assert "'ultrasound_segmenter' is not installed" in outcome.skipped["api_rps"]


def test_measure_api_reports_a_server_that_dies_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ultrasound_segmenter.keras").write_bytes(b"")
    (tmp_path / "ultrasound_segmenter.json").write_text("{}")

    class _DeadServer:
        returncode = 3

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def poll(self) -> int:
            return 3

        def terminate(self) -> None:
            pass

        def wait(self, timeout: float) -> int:
            return 3

    monkeypatch.setattr(api_load.subprocess, "Popen", _DeadServer)
    outcome = measure_api(BenchOptions(models_dir=tmp_path))
    assert outcome.results["api_rps"] is None
    assert outcome.skipped["api_p95_ms"] == (
        "measurement failed: the API server exited with 3 at start-up"
    )
