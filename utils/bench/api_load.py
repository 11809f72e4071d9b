"""``api_rps`` and ``api_p95_ms``: the REST API under a bounded loopback load.

Starts ``uvicorn api.main:app`` on a free loopback port in a fresh process (models
from ``--models-dir``, no token), waits until it answers ``/health``, then runs
``api_clients`` client threads, each posting the 500 x 500 benchmark PNG to
``/v1/analyze`` back to back for ``api_seconds``. Requests still in flight at the end
are awaited and counted. Only 200 answers count towards the rate and the latencies;
any other answer is reported in the details.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx

from utils.bench.outcome import BenchOptions, Outcome
from utils.bench.sample import example_png
from utils.bench.stats import timing_stats

__all__ = ["free_port", "load_test", "measure_api"]

ENDPOINT = "/v1/analyze"
_START_TIMEOUT_S = 300.0
_REQUEST_TIMEOUT_S = 300.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(base_url: str, server: subprocess.Popen) -> dict[str, Any]:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with {server.returncode} at start-up")
        try:
            answer = httpx.get(f"{base_url}/health", timeout=5.0)
            if answer.status_code == 200:
                return answer.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the API server did not answer /health within {_START_TIMEOUT_S:.0f} s")


def load_test(
    base_url: str, png: bytes, *, clients: int, seconds: float
) -> tuple[list[float], Counter, float]:
    """Closed-loop load: ``clients`` threads posting back to back for ``seconds``.

    Returns:
        Latencies (s) of the 200 answers, a count of every status (or error type),
        and the wall time from the first request to the last answer.
    """
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    # Sessions first (building one takes a while), so the clock covers requests only.
    sessions = [httpx.Client(base_url=base_url, timeout=_REQUEST_TIMEOUT_S) for _ in range(clients)]
    stop_at = time.monotonic() + seconds

    def client(session: httpx.Client) -> None:
        with session:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    answer = session.post(ENDPOINT, files={"file": ("bench.png", png, "image/png")})
                    status: int | str = answer.status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in sessions]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, time.perf_counter() - started


def measure_api(options: BenchOptions) -> Outcome:
    """Serve the API in a subprocess and load it; ``null`` with the reason on failure."""
    outcome = Outcome()
    keys = ("api_rps", "api_p95_ms")
    if not options.bundle_present(options.segmenter):
        for key in keys:
            outcome.skip(key, options.missing_reason(options.segmenter))
        return outcome
    clients = 2 if options.quick else options.api_clients
    seconds = 3.0 if options.quick else options.api_seconds
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
    environment.update(API_MODELS_DIR=str(options.models_dir), API_SEGMENTER=options.segmenter)
    environment["API_CLASSIFIER"] = options.classifier
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(
        command,
        cwd=options.project_root,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_until_up(base_url, server)
        png = example_png()
        httpx.post(  # one warm request
            f"{base_url}{ENDPOINT}",
            files={"file": ("bench.png", png, "image/png")},
            timeout=_REQUEST_TIMEOUT_S,
        )
        latencies, statuses, wall = load_test(base_url, png, clients=clients, seconds=seconds)
    except RuntimeError as error:
        for key in keys:
            outcome.skip(key, f"measurement failed: {error}")
        return outcome
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    details = {
        "endpoint": ENDPOINT,
        "clients": clients,
        "seconds": round(wall, 2),
        "statuses": {str(k): v for k, v in statuses.items()},
        "health": health,
    }
    outcome.details["api"] = details
    if not latencies:
        for key in keys:
            outcome.skip(key, f"no request succeeded: statuses {details['statuses']}")
        return outcome
    latency = timing_stats(latencies)
    details["latency_ms"] = latency
    outcome.results["api_rps"] = round(len(latencies) / wall, 2)
    outcome.results["api_p95_ms"] = latency["p95"]
    return outcome
