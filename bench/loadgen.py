"""Closed-loop HTTP load generator: C clients, each sending one request and waiting for the answer.

Runs in its own process (never inside a server). Each client keeps its connection alive when the
server allows it and reconnects when the server closes it (gunicorn sync workers do, after every
request). Bounded: stops after `--requests` per client or `--duration` seconds, whichever comes first.
Prints one JSON object: req/s, latency percentiles (ms), errors by status, mean reported batch size,
and with --watch-pgid the server's CPU per request, its own, and how busy the rest of the machine was.
Every request carries a new random multipart boundary, as browsers, requests and curl send
(`--fixed-boundary` reuses one: werkzeug-based servers then hit the regex cache and look ~0.4 ms faster).
With `--repeat-share F` the file gets 32 trailing bytes (decoders ignore bytes after the image's end): the same
ones in a share F of the requests (a repeat: a result cache can answer it), random ones in the rest (an input never
seen before); F=0 makes every request a new input, so no server can answer from a cache.

    python bench/loadgen.py --url http://127.0.0.1:8000/api/v1/predict --file photo.jpg \
        --field model=resnet18-demo --concurrency 16 --duration 10 --warmup 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import os
import random
import re
import resource
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


def multipart_body(file_path: Path, fields: dict[str, str], boundary: str, tail: bytes = b"") -> tuple[bytes, str]:
    """The request body every client sends (built once; `tail` after the file's bytes), and its content type."""
    mime = mimetypes.guess_type(file_path.name)[0] or "application/octet-stream"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_path.name}"\r\n'
        f"Content-Type: {mime}\r\n\r\n".encode()
        + file_path.read_bytes()
        + tail
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class ClientLog:
    """What one client saw inside the measurement window."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    cached: int = 0


def run_client(
    url: str,
    body: bytes,
    content_type: str,
    window: tuple[float, float],
    max_requests: int,
    log: ClientLog,
    fresh_boundary: bool = True,
    repeat_share: float | None = None,
) -> None:
    """Send requests back to back until the window closes or the request budget is spent.

    Like browsers, requests and curl, each request gets a new random multipart boundary (the body is
    built once with PLACEHOLDER as its boundary); `fresh_boundary=False` reuses one for every request."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    start, stop = window
    sent = 0
    chance = random.Random(os.urandom(8))
    while sent < max_requests:
        began = time.perf_counter()
        if began >= stop:
            break
        if fresh_boundary:
            token = os.urandom(16).hex().encode()
            request_body = body.replace(PLACEHOLDER, token)
            headers["Content-Type"] = content_type.replace(PLACEHOLDER.decode(), token.decode())
        else:
            request_body = body
        if repeat_share is not None:
            repeat = chance.random() < repeat_share
            request_body = request_body.replace(INPUT_TAIL, REPEATED_TAIL if repeat else os.urandom(16).hex().encode())
        try:
            connection.request("POST", parts.path, request_body, headers)
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
        if (batch := BATCH_SIZE.search(payload)) is not None:  # no json.loads: it would cost only ai_service client CPU
            log.batch_sizes.append(int(batch.group(1)))
        if b'"cached":true' in payload or b'"cached": true' in payload:
            log.cached += 1
    connection.close()


#: ai_service's top-level "batch_size" (its first member after model, version and task): read without json.loads.
BATCH_SIZE = re.compile(rb'"batch_size": ?(\d+)')
TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by a process group (a server and its workers), counting workers that
    exited too: their time moves into their parent's children counters when they are reaped."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK


def cpu_snapshot(pgid: int | None) -> tuple[float, float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return (group_cpu_seconds(pgid) if pgid else 0.0, own.ru_utime + own.ru_stime, machine_busy_seconds())


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


#: 32 hex digits, as long as the random boundaries that replace it per request.
PLACEHOLDER = b"b0undaryb0undaryb0undaryb0undary"
#: 32 bytes after the file's own (replaced per request with --repeat-share), and the bytes of a repeat.
INPUT_TAIL = b"t41lt41lt41lt41lt41lt41lt41lt41l"
REPEATED_TAIL = b"0" * 32


def run(
    url: str,
    file_path: Path,
    fields: dict[str, str],
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int,
    watch_pgid: int | None = None,
    fresh_boundary: bool = True,
    repeat_share: float | None = None,
    latencies_out: Path | None = None,
) -> dict:
    tail = INPUT_TAIL if repeat_share is not None else b""
    body, content_type = multipart_body(file_path, fields, PLACEHOLDER.decode(), tail)
    began = time.perf_counter()
    window = (began + warmup, began + warmup + duration)
    logs = [ClientLog() for _ in range(concurrency)]
    threads = [
        threading.Thread(
            target=run_client,
            args=(url, body, content_type, window, max_requests, log, fresh_boundary, repeat_share),
            daemon=True,
        )
        for log in logs
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, window[0] - time.perf_counter()))
    before = cpu_snapshot(watch_pgid)
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    after = cpu_snapshot(watch_pgid)
    for thread in threads:
        thread.join(warmup + duration + 120)
    elapsed = min(time.perf_counter(), window[1]) - window[0]
    latencies = sorted(value for log in logs for value in log.latencies_ms)
    errors: dict[str, int] = {}
    for log in logs:
        for status, count in log.errors.items():
            errors[status] = errors.get(status, 0) + count
    batches = [size for log in logs for size in log.batch_sizes]
    if latencies_out is not None:  # for a caller merging several loadgen processes (bench/serving_gpu.py)
        latencies_out.write_text(json.dumps({"latencies_ms": latencies, "batch_sizes": batches}))
    server_cpu, client_cpu, busy = (b - a for a, b in zip(before, after))
    counted = max(1, len(latencies) + sum(errors.values()))
    cpu = {
        "server_cpu_ms": round(1000 * server_cpu / counted, 2) if watch_pgid else None,
        "loadgen_cpu_ms": round(1000 * client_cpu / counted, 2),
        "other_cpu_pct": round(100 * max(0.0, busy - server_cpu - client_cpu) / (elapsed * os.cpu_count()), 1)
        if watch_pgid
        else None,
    }
    return {
        "concurrency": concurrency,
        "ok": len(latencies),
        "errors": errors,
        **cpu,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else float("nan"),
        "mean_batch_size": round(statistics.fmean(batches), 2) if batches else None,
        "cached_share": round(sum(log.cached for log in logs) / len(latencies), 3) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--field", action="append", default=[], help="extra form field name=value (repeatable)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="measurement window in seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of uncounted requests first")
    parser.add_argument("--requests", type=int, default=100_000, help="at most this many counted per client")
    parser.add_argument("--watch-pgid", type=int, help="report this process group's CPU per request (the server)")
    parser.add_argument(
        "--fixed-boundary",
        action="store_true",
        help="one multipart boundary for every request (real clients send a new one each time)",
    )
    parser.add_argument(
        "--repeat-share",
        type=float,
        help="share of requests repeating one input (0 = every request a new input); off: the file as it is",
    )
    parser.add_argument("--latencies-out", type=Path, help="also write every latency and batch size here (JSON)")
    args = parser.parse_args()
    fields = dict(item.split("=", 1) for item in args.field)
    print(
        json.dumps(
            run(
                args.url,
                args.file,
                fields,
                args.concurrency,
                args.duration,
                args.warmup,
                args.requests,
                args.watch_pgid,
                fresh_boundary=not args.fixed_boundary,
                repeat_share=args.repeat_share,
                latencies_out=args.latencies_out,
            )
        )
    )


if __name__ == "__main__":
    main()
