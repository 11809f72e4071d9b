"""Load test (a benchmark, not a unit test): N concurrent clients against uvicorn on loopback.

    python -m api.loadtest --clients 8 --duration 30 --endpoint /v1/segment

Starts ``uvicorn api.main:app`` on 127.0.0.1 (a free port), waits for ``/health``,
warms up, then runs N client threads, each posting the same image in a loop, for a
bounded time. Prints and writes JSON (``--out``): requests/s, latency p50/p95/p99,
error count (non-200 answers and transport errors) and the server's resident memory
before, at the peak of, and after the load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from utils.paths import PROJECT_ROOT, SAVED_MODELS_DIR
from utils.phantoms import generate_phantom


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _default_image() -> bytes:
    phantom = generate_phantom("benign_oval", size=(400, 480), seed=3)
    return cv2.imencode(".png", phantom.image)[1].tobytes()


def _wait_healthy(base_url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {server.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the API did not answer /health within {timeout_s:.0f} s")


def _client_loop(
    url: str, image: bytes, form: dict[str, str], stop_at: float, out: list[tuple[float, int]]
) -> None:
    with httpx.Client(timeout=120) as client:
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                status = client.post(url, files={"file": ("x.png", image)}, data=form).status_code
            except httpx.TransportError:
                status = -1
            out.append((time.perf_counter() - start, status))


def run_load(
    base_url: str, endpoint: str, image: bytes, clients: int, duration_s: float, server_pid: int
) -> dict[str, Any]:
    """Run ``clients`` threads for ``duration_s`` and summarise latencies and memory."""
    form = {"mask_format": "rle"} if endpoint in ("/v1/segment", "/v1/analyze") else {}
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    rss_before = _rss_mib(server_pid)
    peak = [rss_before]
    stop_at = time.monotonic() + duration_s
    threads = [
        threading.Thread(target=_client_loop, args=(base_url + endpoint, image, form, stop_at, out))
        for out in results
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak.append(_rss_mib(server_pid))
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    samples = [sample for per_client in results for sample in per_client]
    latencies_ms = np.array([seconds for seconds, _ in samples]) * 1000
    errors = sum(status != 200 for _, status in samples)
    rss_after = _rss_mib(server_pid)
    return {
        "endpoint": endpoint,
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "requests": len(samples),
        "errors": errors,
        "requests_per_s": round(len(samples) / elapsed, 2),
        "latency_ms": {
            name: round(float(np.percentile(latencies_ms, q)), 1) if samples else None
            for name, q in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        "server_rss_mib": {
            "before": round(rss_before, 1),
            "peak": round(max(peak), 1),
            "after": round(rss_after, 1),
            "growth": round(rss_after - rss_before, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Start the server, warm it up, load it, print and save the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load.")
    parser.add_argument("--endpoint", default="/v1/segment")
    parser.add_argument("--models-dir", type=Path, default=SAVED_MODELS_DIR)
    parser.add_argument("--image", type=Path, help="Image to post (default: a phantom).")
    parser.add_argument("--warmup", type=int, default=5, help="Requests before measuring.")
    parser.add_argument("--out", type=Path, default=Path("loadtest.json"))
    args = parser.parse_args(argv)
    image = args.image.read_bytes() if args.image else _default_image()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "API_MODELS_DIR": str(args.models_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("API_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=PROJECT_ROOT,
        env=env,
    )  # fmt: skip
    try:
        _wait_healthy(base_url, server, timeout_s=300)
        for _ in range(args.warmup):
            httpx.post(base_url + args.endpoint, files={"file": ("x.png", image)}, timeout=120)
        summary = run_load(base_url, args.endpoint, image, args.clients, args.duration, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary["image_bytes"] = len(image)
    text = json.dumps(summary, indent=2)
    print(text)
    args.out.write_text(text + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
