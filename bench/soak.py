"""Soak test: bounded mixed load against a live gunicorn, one worker SIGKILLed half-way, figures to markdown.

    .venv/bin/python bench/soak.py                      # 5 minutes, concurrency 32, 2 workers
    .venv/bin/python bench/soak.py --duration 180 --output bench/results/soak.md

It starts the production config (gunicorn.conf.py) on a free loopback port, warms up, records each
worker's RSS, runs the load (valid predictions whose answers are checked, invalid uploads that must be
4xx, cheap reads), kills one worker with SIGKILL mid-run, and at the end reports throughput, latency
percentiles, outcomes by class, RSS growth and whether the targets hold:
  - no 5xx or connection error on a valid request, except requests in flight at the moment of the kill;
  - no wrong answer, every invalid request answered 4xx;
  - RSS growth of the workers that lived through the run under 10%.
Traffic goes only to 127.0.0.1; every loop is bounded by the duration.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import imaging_samples  # noqa: E402
from live_gunicorn import rss_bytes, running_gunicorn  # noqa: E402

RSS_GROWTH_LIMIT = 0.10


@dataclass
class Outcome:
    kind: str  # valid | invalid | read
    name: str
    started: float
    ended: float
    status: int  # 0 = connection error
    correct: bool = True


@dataclass
class Payload:
    kind: str
    name: str
    send: Callable[[requests.Session, str], requests.Response]
    check: Callable[[requests.Response], bool] = lambda response: True
    weight: float = 1.0


def _first(body: dict) -> dict:
    return body["results"][0] if "results" in body else body


def build_payloads() -> list[Payload]:
    """Digits with known labels in several encodings, a set of bad inputs, and cheap reads."""
    from PIL import Image

    from ai_service.models.builtin.digits_training import load_digits_split, render_digit

    split = load_digits_split()
    payloads: list[Payload] = []
    for index in range(0, 60, 6):
        label = str(split.test_labels[index])
        image = render_digit(split.test_images[index], 64)
        png, jpeg = io.BytesIO(), io.BytesIO()
        image.save(png, "PNG")
        Image.eval(image, lambda v: 255 - v).convert("RGB").save(jpeg, "JPEG", quality=90)

        def right(response: requests.Response, label: str = label) -> bool:
            return _first(response.json())["predictions"][0]["label"] == label

        payloads.append(
            Payload(
                "valid",
                f"png-{label}",
                lambda s, base, data=png.getvalue(): s.post(
                    base + "/api/v1/predict", files={"file": ("d.png", data, "image/png")}, timeout=60
                ),
                right,
                3.0,
            )
        )
        payloads.append(
            Payload(
                "valid",
                f"jpeg-{label}",
                lambda s, base, data=jpeg.getvalue(): s.post(
                    base + "/api/v1/predict", files={"file": ("d.jpg", data, "image/jpeg")}, timeout=60
                ),
                right,
                2.0,
            )
        )
        payloads.append(
            Payload(
                "valid",
                f"json-{label}",
                lambda s, base, data=png.getvalue(): s.post(
                    base + "/api/v1/predict", json={"image": base64.b64encode(data).decode()}, timeout=60
                ),
                right,
                1.0,
            )
        )
    bad = imaging_samples.bad_inputs()
    for name in (
        "zero_bytes",
        "text_named_png",
        "truncated_png",
        "png_bad_crc",
        "truncated_jpeg",
        "header_bomb_png",
        "huge_dimension_gif",
        "svg_xxe",
        "svg_entity_bomb",
        "psd_bad_header",
    ):
        payloads.append(
            Payload(
                "invalid",
                name,
                lambda s, base, data=bad[name][0]: s.post(
                    base + "/api/v1/predict", files={"file": ("x.png", data)}, timeout=60
                ),
                weight=0.4,
            )
        )
    payloads.append(
        Payload(
            "invalid",
            "wrong_field",
            lambda s, base: s.post(base + "/api/v1/predict", files={"image": ("x.png", b"abc")}, timeout=60),
            weight=0.4,
        )
    )
    payloads.append(
        Payload(
            "invalid",
            "bad_base64",
            lambda s, base: s.post(base + "/api/v1/predict", json={"image": "@@not-base64@@"}, timeout=60),
            weight=0.4,
        )
    )
    payloads.append(
        Payload(
            "invalid",
            "unknown_model",
            lambda s, base: s.post(
                base + "/api/v1/predict", files={"file": ("x.png", b"abc")}, data={"model": "nope"}, timeout=60
            ),
            weight=0.4,
        )
    )
    payloads.append(Payload("read", "models", lambda s, base: s.get(base + "/api/v1/models", timeout=60), weight=1.0))
    payloads.append(Payload("read", "healthz", lambda s, base: s.get(base + "/healthz", timeout=60), weight=1.0))
    return payloads


@dataclass
class Load:
    base: str
    payloads: list[Payload]
    until: float
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, seed: int) -> None:
        """One client: a keep-alive session sending weighted random requests until the deadline."""
        rng = random.Random(seed)
        weights = [p.weight for p in self.payloads]
        session = requests.Session()
        local: list[Outcome] = []
        while time.monotonic() < self.until:
            payload = rng.choices(self.payloads, weights)[0]
            started = time.monotonic()
            try:
                response = payload.send(session, self.base)
                status = response.status_code
                correct = (payload.kind != "valid" or status != 200) or payload.check(response)
            except requests.RequestException:
                status, correct = 0, True
                session.close()
                session = requests.Session()
            local.append(Outcome(payload.kind, payload.name, started, time.monotonic(), status, correct))
        with self.lock:
            self.outcomes.extend(local)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def status_class(status: int) -> str:
    return "connection error" if status == 0 else f"{status // 100}xx"


def run(args: argparse.Namespace) -> tuple[str, bool]:
    payloads = build_payloads()
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as workdir,
        running_gunicorn(
            Path(workdir),
            workers=args.workers,
            threads=args.threads,
            preload="digits",
            max_requests=args.max_requests,
            max_requests_jitter=0,
        ) as server,
    ):
        warm = Load(server.base, payloads, time.monotonic() + args.warmup)
        threads = [threading.Thread(target=warm.client, args=(i,)) for i in range(args.concurrency)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        start_workers = {pid: rss_bytes(pid) for pid in server.workers()}
        master_rss_start = rss_bytes(server.process.pid)

        started = time.monotonic()
        load = Load(server.base, payloads, started + args.duration)
        threads = [threading.Thread(target=load.client, args=(1000 + i,)) for i in range(args.concurrency)]
        [t.start() for t in threads]
        trajectory: list[tuple[float, dict[int, int]]] = [(0.0, dict(start_workers))]
        sample_rss_until(server, trajectory, started, started + args.duration * args.kill_at)
        victim = sorted(start_workers)[0]
        kill_time = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replacement = server.wait_for_workers(args.workers, timeout=120, exclude=(victim,))
        replaced_after = time.monotonic() - kill_time
        sample_rss_until(server, trajectory, started, started + args.duration)
        [t.join() for t in threads]
        elapsed = time.monotonic() - started
        end_workers = {pid: rss_bytes(pid) for pid in server.workers()}
        master_rss_end = rss_bytes(server.process.pid)
        scraped = requests.get(server.base + "/metrics", timeout=30).text
        exit_code = server.stop()
    return report(
        args,
        load.outcomes,
        elapsed,
        kill_time - started,
        victim,
        replaced_after,
        start_workers,
        end_workers,
        master_rss_start,
        master_rss_end,
        scraped,
        exit_code,
        set(replacement),
        trajectory,
    )


def sample_rss_until(server, trajectory: list, started: float, until: float, every: float = 30.0) -> None:
    """Record every worker's RSS every `every` seconds until `until` (the growth curve in the report)."""
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(every, left))
        trajectory.append((time.monotonic() - started, {pid: rss_bytes(pid) for pid in server.workers()}))


def report(
    args,
    outcomes: list[Outcome],
    elapsed: float,
    kill_offset: float,
    victim: int,
    replaced_after: float,
    start_workers: dict[int, int],
    end_workers: dict[int, int],
    master_start: int,
    master_end: int,
    scraped: str,
    exit_code: int,
    new_workers: set[int],
    trajectory: list[tuple[float, dict[int, int]]],
) -> tuple[str, bool]:
    base = min(o.started for o in outcomes)
    kill_at = base + kill_offset

    def in_flight_at_kill(o: Outcome) -> bool:
        return o.started <= kill_at + 0.05 and o.ended >= kill_at - 0.05

    by_kind = Counter((o.kind, status_class(o.status)) for o in outcomes)
    valid = [o for o in outcomes if o.kind == "valid"]
    valid_failed = [o for o in valid if o.status == 0 or o.status >= 500]
    excused = [o for o in valid_failed if in_flight_at_kill(o)]
    unexplained = [o for o in valid_failed if not in_flight_at_kill(o)]
    wrong = [o for o in valid if o.status == 200 and not o.correct]
    invalid = [o for o in outcomes if o.kind == "invalid"]
    invalid_not_4xx = [o for o in invalid if not 400 <= o.status < 500 and not in_flight_at_kill(o)]
    latencies = [(o.ended - o.started) * 1000 for o in valid if o.status == 200]
    survivors = sorted(set(start_workers) & set(end_workers))
    growth = {pid: end_workers[pid] / start_workers[pid] - 1 for pid in survivors if start_workers[pid]}
    worst_growth = max(growth.values(), default=0.0)
    served_total = sum(
        float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines() if line.startswith("ai_service_requests_total{")
    )
    checks = {
        "no 5xx/connection error on valid requests outside the kill": not unexplained,
        "no wrong answers": not wrong,
        "every invalid request answered 4xx": not invalid_not_4xx,
        f"worker RSS growth < {RSS_GROWTH_LIMIT:.0%}": worst_growth < RSS_GROWTH_LIMIT,
        "killed worker replaced": bool(new_workers - set(start_workers)),
        "graceful stop (SIGTERM) exit code 0": exit_code == 0,
    }
    mib = 2**20
    lines = [
        "# Soak test",
        "",
        f"`bench/soak.py --duration {args.duration:g} --concurrency {args.concurrency} --workers {args.workers} "
        f"--threads {args.threads}` — gunicorn (gunicorn.conf.py, gthread) on 127.0.0.1, model `digits` (CPU), "
        f"{os.cpu_count()} CPU cores, warm-up {args.warmup:g} s before the RSS baseline. Load: valid predictions "
        "(PNG, JPEG, JSON base64; answers checked), invalid uploads (corrupt, bombs, XXE, wrong fields), reads.",
        f"Worker {victim} was killed with SIGKILL at t={kill_offset:.1f} s; a replacement answered after "
        f"{replaced_after:.1f} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| duration | {elapsed:.1f} s |",
        f"| requests | {len(outcomes)} ({len(outcomes) / elapsed:.1f}/s) |",
        f"| valid predictions | {len(valid)} ({len(valid) / elapsed:.1f}/s) |",
        f"| valid latency p50 / p90 / p99 / max | {percentile(latencies, 50):.1f} / {percentile(latencies, 90):.1f} / "
        f"{percentile(latencies, 99):.1f} / {max(latencies, default=float('nan')):.1f} ms |",
        f"| valid failed (5xx or connection) | {len(valid_failed)}: {len(excused)} in flight at the kill, "
        f"{len(unexplained)} otherwise |",
        f"| wrong answers | {len(wrong)} |",
        f"| invalid not answered 4xx | {len(invalid_not_4xx)} |",
        f"| requests counted by /metrics (all workers, incl. warm-up) | {served_total:.0f} |",
        f"| master RSS start → end | {master_start / mib:.1f} → {master_end / mib:.1f} MiB |",
        "",
        "| outcome | valid | invalid | read |",
        "|---|---|---|---|",
    ]
    for cls in sorted({status_class(o.status) for o in outcomes}):
        lines.append(f"| {cls} | {by_kind[('valid', cls)]} | {by_kind[('invalid', cls)]} | {by_kind[('read', cls)]} |")
    lines += ["", "| worker | RSS start | RSS end | growth |", "|---|---|---|---|"]
    for pid in sorted(set(start_workers) | set(end_workers)):
        start, end = start_workers.get(pid), end_workers.get(pid)
        note = f"{growth[pid]:+.1%}" if pid in growth else ("killed" if pid == victim else "replacement")
        lines.append(
            f"| {pid} | {f'{start / mib:.1f} MiB' if start else '—'} | "
            f"{f'{end / mib:.1f} MiB' if end else '—'} | {note} |"
        )
    lines += [
        "",
        "RSS (MiB) every 30 s, per worker: "
        + "; ".join(
            f"t={at:.0f}s " + ", ".join(f"{pid}: {rss / mib:.0f}" for pid, rss in sorted(sizes.items()))
            for at, sizes in trajectory
        ),
    ]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**NO**'} |" for name, ok in checks.items()]
    if unexplained:
        lines += [
            "",
            "Unexplained failures (first 10): "
            + ", ".join(f"{o.name}@{o.started - base:.1f}s→{o.status}" for o in unexplained[:10]),
        ]
    return "\n".join(lines) + "\n", all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of measured load (default 300)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=30.0,
        help="seconds of load before the RSS baseline (allocator arenas and caches fill up first)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the run at which a worker is killed")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=0,
        help="gunicorn max_requests during the soak (0: off, so RSS is compared on the same workers)",
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "soak.md"))
    args = parser.parse_args(argv)
    text, ok = run(args)
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
