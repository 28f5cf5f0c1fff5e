"""Closed-loop HTTP load generator: C clients, each sending one request and waiting for the answer.

Runs in its own process (never inside a server). Each client keeps its connection alive when the
server allows it and reconnects when the server closes it (gunicorn sync workers do, after every
request). Bounded: stops after `--requests` per client or `--duration` seconds, whichever comes first.
Prints one JSON object: req/s, latency percentiles (ms), errors by status, mean reported batch size.

    python bench/loadgen.py --url http://127.0.0.1:8000/api/v1/predict --file photo.jpg \
        --field model=resnet18-demo --concurrency 16 --duration 10 --warmup 2
"""
from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


def multipart_body(file_path: Path, fields: dict[str, str]) -> tuple[bytes, str]:
    """The request body every client sends (built once), and its content type."""
    boundary = uuid.uuid4().hex
    mime = mimetypes.guess_type(file_path.name)[0] or "application/octet-stream"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_path.name}"\r\n'
                 f"Content-Type: {mime}\r\n\r\n".encode() + file_path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class ClientLog:
    """What one client saw inside the measurement window."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)


def run_client(url: str, body: bytes, content_type: str, window: tuple[float, float], max_requests: int,
               log: ClientLog) -> None:
    """Send requests back to back until the window closes or the request budget is spent."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    start, stop = window
    sent = 0
    while sent < max_requests:
        began = time.perf_counter()
        if began >= stop:
            break
        try:
            connection.request("POST", parts.path, body, headers)
            response = connection.getresponse()
            payload = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            payload, status = b"", type(error).__name__
        ended = time.perf_counter()
        if began < start:
            continue  # warm-up: not counted, not limited
        sent += 1
        if status != 200:
            log.errors[str(status)] = log.errors.get(str(status), 0) + 1
            continue
        log.latencies_ms.append((ended - began) * 1000.0)
        if b'"batch_size"' in payload:
            log.batch_sizes.append(int(json.loads(payload).get("batch_size") or 0))
    connection.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run(url: str, file_path: Path, fields: dict[str, str], concurrency: int, duration: float, warmup: float,
        max_requests: int) -> dict:
    body, content_type = multipart_body(file_path, fields)
    began = time.perf_counter()
    window = (began + warmup, began + warmup + duration)
    logs = [ClientLog() for _ in range(concurrency)]
    threads = [threading.Thread(target=run_client, args=(url, body, content_type, window, max_requests, log),
                                daemon=True) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(warmup + duration + 120)
    elapsed = min(time.perf_counter(), window[1]) - window[0]
    latencies = sorted(value for log in logs for value in log.latencies_ms)
    errors: dict[str, int] = {}
    for log in logs:
        for status, count in log.errors.items():
            errors[status] = errors.get(status, 0) + count
    batches = [size for log in logs for size in log.batch_sizes]
    return {"concurrency": concurrency, "ok": len(latencies), "errors": errors,
            "seconds": round(elapsed, 3), "rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else 0.0,
            "p50_ms": round(percentile(latencies, 0.50), 2), "p95_ms": round(percentile(latencies, 0.95), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "mean_ms": round(statistics.fmean(latencies), 2) if latencies else float("nan"),
            "mean_batch_size": round(statistics.fmean(batches), 2) if batches else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--field", action="append", default=[], help="extra form field name=value (repeatable)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="measurement window in seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of uncounted requests first")
    parser.add_argument("--requests", type=int, default=100_000, help="at most this many counted per client")
    args = parser.parse_args()
    fields = dict(item.split("=", 1) for item in args.field)
    print(json.dumps(run(args.url, args.file, fields, args.concurrency, args.duration, args.warmup, args.requests)))


if __name__ == "__main__":
    main()
