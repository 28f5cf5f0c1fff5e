"""Serving benchmark: ai_service as `make run` starts it vs plain Flask apps (naive, sized, keep-alive) vs LitServe,
against the in-process limit; resnet18 in fp32 and bf16 side by side; a 50%-repeat workload with and without
the result cache.

    make bench-serving            # the full run, ~20 min on 2 cores; writes bench/results/serving.md
    .venv/bin/python bench/serving.py --only digits --quick     # a subset: models, servers and/or sections
    .venv/bin/python bench/serving.py --only cache              # only the result-cache comparison

1. Builds a temporary AI_SERVICE_HOME: resnet18 weights (random, seed 0: TIMING ONLY) registered
   through models.yaml, plus the payloads (a 640×480 JPEG photo, a 64×64 PNG digit).
2. Measures the physical limit in a separate process: decode+preprocess per image, pure forward
   images/s at batch 1/8/16/32 on all cores.
3. Starts every server on a loopback port (and waits until all its workers are idle, not just the
   first to answer), pauses all (SIGSTOP) and wakes one at a time to drive it with bench/loadgen.py
   (its own process; a fresh multipart boundary per request, as real clients send; every request a new
   input, so no result cache can answer it) at concurrency 1, 4, 16, 32, the servers taking turns at every
   point; further passes repeat concurrency 1 (once) and 16 (twice): one point can be off by ±10% on a
   shared machine. Targets compare ai_service with the best peer at each point.
4. The cache section: ai_service with its default result cache and with AI_SERVICE_RESULT_CACHE=off, at c=16,
   half the requests repeating one input (loadgen --repeat-share 0.5).
5. Prints the tables and writes bench/results/serving.md (text below ANALYSIS_MARKER is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "bench" / "baselines"
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "serving.md"
HISTORY_RESULTS = ROOT / "bench" / "results" / "history.md"

from ai_service.settings import ServerSettings  # noqa: E402 (needs ROOT on the path)

#: ai_service runs with the defaults of `make run` (workers, threads: ServerSettings' own).
THREADS = ServerSettings().threads
ANALYSIS_MARKER = "<!-- analysis: hand-written, kept when the benchmark rewrites this file -->"
PY = sys.executable
MODELS = ("digits", "resnet18-demo", "resnet18-bf16")
#: Each model's request payload (resnet18-fp16: bench/serving_gpu.py).
PAYLOAD = {
    "digits": "digit.png",
    "resnet18-demo": "photo.jpg",
    "resnet18-bf16": "photo.jpg",
    "resnet18-fp16": "photo.jpg",
}
#: Models measured only at some concurrency levels (first pass); the others at every level.
MODEL_LEVELS = {"resnet18-bf16": (1, 16)}
#: `--only` words that select models.
MODEL_ALIASES = {"digits": ("digits",), "resnet18": ("resnet18-demo", "resnet18-bf16"), "bf16": ("resnet18-bf16",)}
#: Share of requests repeating one input in the cache section, its concurrency and passes.
CACHE_REPEAT_SHARE, CACHE_CONCURRENCY, CACHE_PASSES = 0.5, 16, 3
#: Peers: the best of them at each point is what ai_service is judged against.
#: Plain Flask apps (the one to beat is the best of them at each point) and every peer.
PLAIN = ("naive", "plain", "plain-gthread")
PEERS = (*PLAIN, "litserve")
#: Threads per worker of the keep-alive plain app (gthread): CPU-bound views gain nothing from more.
PLAIN_THREADS = 4
CONCURRENCY = (1, 4, 16, 32)
#: Levels measured again after the first pass, one tuple per extra pass: c=16 decides the targets and a
#: single 8-12 s point on this shared machine can be off by ±10%, so it gets three repetitions.
REPEATED = ((1, 16), (16,))
BATCHES = (1, 8, 16, 32)
#: A point during which other processes used more than this % of the machine is measured again (keeping the
#: quietest attempt, at most 3 attempts a point and MAX_RETRIES extra attempts a run).
BUSY_PCT = 10.0
MAX_RETRIES = 12
#: gunicorn worker timeout while benchmarking: servers sit paused (SIGSTOP) while the others are measured,
#: and a master resumed before its workers must not take them for hung.
PAUSED_TIMEOUT = 900
PROFILE = True


def cores() -> int:
    return len(os.sched_getaffinity(0))


# ---- set-up ---------------------------------------------------------------------------------------


def prepare_home(home: Path) -> None:
    """resnet18 with random fixed-seed weights (timing only) declared in models.yaml, and the payloads."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image, ImageDraw, ImageFilter

    from ai_service.models.builtin.digits_training import load_digits_split, render_digit

    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), models / "resnet18.pt")
    (models / "labels.txt").write_text("".join(f"class-{index:03d}\n" for index in range(1000)))
    (home / "models.yaml").write_text(
        "models:\n"
        "  - name: resnet18-demo\n"
        "    kind: state_dict\n"
        "    architecture: resnet18\n"
        "    num_classes: 1000\n"
        "    weights: resnet18.pt\n"
        "    input_size: [224, 224]\n"
        "    mode: RGB\n"
        "    mean: [0.485, 0.456, 0.406]\n"
        "    std: [0.229, 0.224, 0.225]\n"
        "    labels_file: labels.txt\n"
        "    description: resnet18 with random weights (benchmark, timing only)\n"
        "  - name: resnet18-bf16\n"
        "    kind: state_dict\n"
        "    architecture: resnet18\n"
        "    num_classes: 1000\n"
        "    weights: resnet18.pt\n"
        "    input_size: [224, 224]\n"
        "    labels_file: labels.txt\n"
        "    precision: bf16\n"
        "    # random weights give near-tied logits: the check is measured and shown, not enforced (timing only)\n"
        "    precision_tolerance: 0\n"
        "    description: the same resnet18 served in bf16 (benchmark, timing only)\n"
    )
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    photo = Image.fromarray((base * 0.6 + rng.normal(60, 25, base.shape)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(photo)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 440))
        draw.ellipse(
            (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))),
            fill=tuple(int(v) for v in rng.integers(0, 255, 3)),
        )
    photo.filter(ImageFilter.GaussianBlur(1)).save(home / "photo.jpg", quality=90)
    split = load_digits_split()
    render_digit(split.test_images[0], 64).save(home / "digit.png")


# ---- the in-process limit -------------------------------------------------------------------------


def best_rate(step, seconds: float, windows: int = 4) -> float:
    """Items per second of `step` (returns how many items it did) in the best of several windows: the
    physical limit is what the machine can do, so a window disturbed by other work must not lower it."""
    rates = []
    for _ in range(windows):
        items, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / windows or items == 0:
            items += step()
        rates.append(items / (time.perf_counter() - started))
    return max(rates)


def measure_limit(home: Path, seconds: float = 2.0) -> dict:
    """Per model: decode+preprocess ms per image (one core), forward images/s per batch size (all cores)."""
    import torch

    from ai_service.imaging.io import decode_image
    from ai_service.models.base import ModelOptions
    from ai_service.models.catalog import build_registry
    from ai_service.settings import load_settings

    settings = load_settings({"home": str(home), "log_level": "WARNING", "log_to_file": False})
    registry = build_registry(settings, torch.device("cpu"))
    report = {}
    for name in MODELS:
        model = registry.get(name)
        data = (home / PAYLOAD[name]).read_bytes()
        torch.set_num_threads(1)

        def prepare(model=model, data=data) -> torch.Tensor:
            return model.preprocess([decode_image(data, target_size=model.decode_size())], ModelOptions()).tensor

        sample = prepare()
        preprocess_ms = 1000.0 / best_rate(lambda prepare=prepare: (prepare(), 1)[1], seconds)
        torch.set_num_threads(cores())
        network = model.network.to(memory_format=torch.channels_last)
        forward = {}
        reduced = model.precision_in_use in ("bf16", "fp16")
        dtype = torch.bfloat16 if model.precision_in_use == "bf16" else torch.float16
        for size in BATCHES:
            batch = sample.expand(size, *sample.shape[1:]).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=reduced):
                network(batch)
                forward[size] = best_rate(lambda n=network, b=batch, s=size: (n(b), s)[1], seconds)
        best = max(forward, key=forward.get)
        report_precision = model.precision_check.as_dict() if model.precision_check is not None else None
        limit = 1.0 / (preprocess_ms / 1000.0 + 1.0 / forward[best])
        report[name] = {
            "preprocess_ms": round(preprocess_ms, 3),
            "forward_ips": {k: round(v, 1) for k, v in forward.items()},
            "best_batch": best,
            "limit_ips": round(limit, 1),
            "precision": report_precision,
        }
    return report


# ---- servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """How to start one server and where each model is served."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    paths: dict[str, str]
    health: str
    config: str
    levels: tuple[int, ...] = ()  # measured only at these concurrency levels, once (informational servers)
    cwd: Path = ROOT  # where it starts: its code is imported from here first
    worker: str = ""  # the gunicorn worker class it must log that it uses (baselines: see servers())
    process: subprocess.Popen | None = field(default=None, repr=False)

    def url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.paths[model]}"

    def start(self, log_path: Path, timeout: float = 180.0) -> None:
        self.spawn(log_path)
        self.wait_ready(log_path, timeout)

    def spawn(self, log_path: Path) -> None:
        """Start the process in its own session (servers can start side by side; wait_ready then waits for each)."""
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, log_path: Path, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up; see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health}", timeout=5) as response:
                    if response.status == 200:
                        self.settle(deadline)
                        self.check_worker(log_path)
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy within {timeout:.0f} s; see {log_path}")

    def check_worker(self, log_path: Path) -> None:
        """A baseline must run the gunicorn worker it is described with (a config file picked up from the working
        directory once turned the sync baselines into ai_service-tuned gthread servers)."""
        said = f"[{self.process.pid}] [INFO] Using worker: {self.worker}"  # this master's line (the log is shared)
        if self.worker and said not in log_path.read_text(errors="replace"):
            self.stop()
            raise RuntimeError(f"{self.name} does not run gunicorn's {self.worker} worker; see {log_path}")

    def settle(self, deadline: float, idle_cores: float = 0.1, longest: float = 20.0) -> None:
        """Wait until every worker has finished starting: the first one to answer the health check says
        nothing of the others, which would otherwise import torch and load models during the first
        measured point (seen: one server at half its throughput on its first point). At most `longest`
        seconds: LitServe's workers poll their queues and never fall fully idle."""
        from loadgen import group_cpu_seconds

        deadline = min(deadline, time.monotonic() + longest)
        while time.monotonic() < deadline:
            before = group_cpu_seconds(self.process.pid)
            time.sleep(1.0)
            if group_cpu_seconds(self.process.pid) - before < idle_cores:
                return

    def pause(self) -> None:
        """SIGSTOP the server's process group: a server not being measured takes no CPU at all."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it started it), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def servers(home: Path, litserve: bool) -> list[Server]:
    """The contenders: three plain Flask apps (naive, well sized with sync workers, and with keep-alive threads),
    ai_service as `make run` starts it, and LitServe (one server per model, see litserve_server.py).

    The plain apps start in bench/baselines: gunicorn reads ./gunicorn.conf.py from where it starts, and from the
    repository root that is ai_service's, whose `threads` turns `-k sync` into gthread and whose post_fork gives
    the app ai_service's own process tuning (literal multipart parser, GIL switch interval). Until 2026-11-28 the
    plain apps ran that way; `check_worker` now refuses a baseline that does not run the worker it claims."""
    n = cores()
    weights = str(home / "models" / "resnet18.pt")
    gunicorn = str(Path(PY).with_name("gunicorn"))
    naive_workers = 2 * n + 1
    plain_models = {m: "/predict" for m in MODELS if m in ("digits", "resnet18-demo")}

    def flask_app(name: str, workers: int, env: dict[str, str], config: str, threads: int = 1) -> Server:
        worker = ["-k", "sync"] if threads == 1 else ["-k", "gthread", "--threads", str(threads)]
        command = [gunicorn, *worker, "-w", str(workers), "-b", "127.0.0.1:{port}", "--timeout"]
        command += [str(PAUSED_TIMEOUT), "--pythonpath", str(ROOT)]
        command += ["--log-level", "info", "naive_flask:app"]  # info: the "Using worker" line check_worker reads
        return Server(
            name,
            command,
            {"BENCH_RESNET_WEIGHTS": weights, **env},
            0,
            plain_models,
            "/health",
            config,
            cwd=BASELINES,
            worker=worker[1],
        )

    found = [
        flask_app(
            "naive",
            naive_workers,
            {},
            f"Flask + gunicorn sync, {naive_workers} workers (gunicorn's 2×cores+1), default torch threads "
            "(oversubscribed: the weakest way to run it)",
        ),
        flask_app(
            "plain",
            n,
            {"BENCH_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
            f"the same Flask app sized as someone who knows torch would: gunicorn sync, {n} workers (one per "
            "core) × 1 torch thread",
        ),
        flask_app(
            "plain-gthread",
            n,
            {"BENCH_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
            f"the plain app with keep-alive connections: gunicorn gthread, {n} workers × {PLAIN_THREADS} threads, "
            "1 torch thread each (stock gunicorn, no ai_service tuning)",
            threads=PLAIN_THREADS,
        ),
        Server(
            "ai_service",
            [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "app:app"],
            {
                "AI_SERVICE_HOME": str(home),
                "AI_SERVICE_PRELOAD": ",".join(MODELS),
                "AI_SERVICE_TIMEOUT": str(PAUSED_TIMEOUT),
                "AI_SERVICE_MAX_REQUESTS": "0",
            },
            0,
            {m: "/api/v1/predict" for m in MODELS},
            "/api/v1/health",
            f"the defaults of `make run`: gunicorn gthread (ai_service/server/worker.py), {n} workers "
            f"(AI_SERVICE_WORKERS=0: one per core) × {THREADS} threads, adaptive torch threads (core budget), "
            "batch ≤ 8, delay ≤ 5 ms, INFO access logging to console and file, metrics on, history on, result "
            "cache on (every request here is a new input, so it answers none and costs its lookup and store); "
            "changed only: models preloaded, worker recycling off (AI_SERVICE_MAX_REQUESTS=0: at these rates the "
            "default 50000 would restart each worker, and reload its models, every few minutes, maybe inside a "
            "measured point) and a long worker timeout (servers sit paused while others are measured)",
        ),
    ]
    if litserve:
        for model in plain_models:
            found.append(
                Server(
                    f"litserve:{model}",
                    [
                        PY,
                        str(ROOT / "bench" / "baselines" / "litserve_server.py"),
                        "--model",
                        model,
                        "--port",
                        "{port}",
                        "--workers",
                        str(n),
                        "--threads",
                        "1",
                    ],
                    {"BENCH_RESNET_WEIGHTS": weights},
                    0,
                    {model: "/predict"},
                    "/health",
                    f"LitServe, {n} inference workers × 1 torch thread, max_batch_size 8, batch_timeout 5 ms",
                )
            )
    return with_ports(found)


def with_ports(found: list[Server]) -> list[Server]:
    """Give each server a free loopback port: in its command ({port}) and, for ai_service, AI_SERVICE_BIND."""
    for server in found:
        server.port = free_port()
        server.command = [part.replace("{port}", str(server.port)) for part in server.command]
        if server.name.startswith("ai_service"):
            server.env["AI_SERVICE_BIND"] = f"127.0.0.1:{server.port}"
    return found


def ai_service_at(production: Server, rev: str, worktree: Path) -> Server:
    """The same server running the code of git revision `rev` (checked out in `worktree`): an A/B of a change."""
    subject = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Server(
        f"{production.name}@{subject.split()[0]}",
        [production.command[0], "-c", str(worktree / "gunicorn.conf.py"), "app:app"],
        {**production.env, "PYTHONPATH": str(worktree)},
        production.port,
        production.paths,
        production.health,
        f"the same, running the code of {subject[:100]} (a git worktree; same settings, same venv)",
        cwd=worktree,
    )


def litserve_status() -> tuple[bool, str]:
    try:
        import litserve
    except Exception as error:  # noqa: BLE001 - any import failure means "not measured", said in the report
        return False, f"LitServe could not be imported here ({type(error).__name__}: {error}); not measured."
    return True, f"LitServe {litserve.__version__}"


# ---- load -----------------------------------------------------------------------------------------


def loadgen_command(
    server: Server, model: str, concurrency: int, home: Path, duration: float, warmup: float, repeat_share: float = 0.0
) -> list[str]:
    """bench/loadgen.py driving `model` on `server` with the model's payload, a share `repeat_share` of the requests
    repeating one input and the others each a new one (0: no result cache can answer any)."""
    return [
        PY,
        str(ROOT / "bench" / "loadgen.py"),
        "--url",
        server.url(model),
        "--file",
        str(home / PAYLOAD[model]),
        "--field",
        f"model={model}",
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--repeat-share",
        str(repeat_share),
    ]


def load_point(
    server: Server, model: str, concurrency: int, home: Path, duration: float, warmup: float, repeat_share: float = 0.0
) -> dict:
    """One closed-loop measurement from a separate loadgen process."""
    command = loadgen_command(server, model, concurrency, home, duration, warmup, repeat_share)
    command += ["--watch-pgid", str(server.process.pid)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=duration + warmup + 180)
    result = json.loads(output.stdout)
    return result


def repetitions_text() -> str:
    """'concurrency 1 was measured 2 times, 16 3 times' from REPEATED."""
    counts: dict[int, int] = {}
    for levels in REPEATED:
        for level in levels:
            counts[level] = counts.get(level, 1) + 1
    return "concurrency " + ", ".join(f"{level} was measured {times} times" for level, times in counts.items())


def schedule(contenders: list[Server], points: tuple[int, ...], repeated: tuple[tuple[int, ...], ...]) -> list[tuple]:
    """(repetition, model, concurrency, server) in run order: servers interleaved at every point, so slow
    drift of the machine (other work, heat) hits every server alike; the first server rotates per point."""
    order = []
    for rep, levels in enumerate((points, *repeated), start=1):
        for model in MODELS:
            for index, concurrency in enumerate(levels):
                only_at = MODEL_LEVELS.get(model)
                if only_at is not None and (rep != 1 or concurrency not in only_at):
                    continue
                serving = [
                    server
                    for server in contenders
                    if model in server.paths and (not server.levels or (rep == 1 and concurrency in server.levels))
                ]
                # Rotate per repetition and level, for each model alike (len(order) % 2 never rotated two servers).
                turn = (rep + index) % len(serving) if serving else 0
                order += [(rep, model, concurrency, server) for server in serving[turn:] + serving[:turn]]
    return order


def run_all(
    contenders: list[Server],
    home: Path,
    points: tuple[int, ...],
    repeated: tuple[tuple[int, ...], ...],
    durations: dict[str, float],
    warmup: float,
    log_path: Path,
    profiles: dict,
    repeat_share: float = 0.0,
) -> list[dict]:
    """Start every server, keep all but the measured one paused (SIGSTOP), measure every point, then
    profile ai_service (into `profiles`)."""
    results = []
    try:
        for server in contenders:
            print(f"-- starting {server.name}", flush=True)
            server.start(log_path)
            server.pause()
        retries = MAX_RETRIES
        for rep, model, concurrency, server in schedule(contenders, points, repeated):
            attempts = []
            while True:
                server.resume()
                try:
                    attempts.append(
                        load_point(server, model, concurrency, home, durations[model], warmup, repeat_share)
                    )
                finally:
                    server.pause()
                if attempts[-1]["other_cpu_pct"] <= BUSY_PCT or retries == 0 or len(attempts) > 2:
                    break
                retries -= 1
                print(
                    f"   ({server.name} {model} c={concurrency}: {attempts[-1]['other_cpu_pct']}% of the CPU was "
                    "used by other work; measuring again)",
                    flush=True,
                )
                time.sleep(5)
            point = min(attempts, key=lambda attempt: attempt["other_cpu_pct"])
            point.update(server=server.name.split(":")[0], model=model, rep=rep, attempts=len(attempts))
            results.append(point)
            print(
                f"   {server.name:22s} {model:14s} c={concurrency:<3d} {point['rps']:8.1f} req/s  "
                f"p50 {point['p50_ms']:7.1f}  p99 {point['p99_ms']:7.1f} ms  errors {point['errors']}  "
                f"batch {point['mean_batch_size']}  server {point['server_cpu_ms']} ms CPU/req  "
                f"other work {point['other_cpu_pct']}%",
                flush=True,
            )
        ours = next((server for server in contenders if server.name == "ai_service"), None)
        if ours is not None and PROFILE:
            for model in (m for m in MODELS if m not in MODEL_LEVELS):
                print(f"-- profiling ai_service on {model} at c=16 (py-spy)", flush=True)
                profiles[model] = profile(ours, model, home)
    finally:
        for server in contenders:
            server.stop()
    return results


# ---- where ai_service's time goes -----------------------------------------------------------------

HISTORY_CATEGORY = "history (record, writer, database)"
#: (category, markers): a py-spy sample belongs to the category of the innermost frame that has a marker.
PROFILE_CATEGORIES = (
    ("forward (torch)", ("ForwardRunner._forward_on",)),
    (HISTORY_CATEGORY, ("service/history/", "storage/", "sqlalchemy/", "sqlite3/", "orjson")),
    ("decode", ("decode_uploads",)),
    ("preprocess (model)", ("preprocess_groups",)),
    ("postprocess (model)", (";_postprocess (",)),
    ("engine: batching, stacking, hand-off", ("Batcher.", "ForwardRunner.")),
    ("multipart parsing (werkzeug)", ("formparser.py", "sansio/multipart.py", "_load_form_data")),
    ("logging (loguru, access line)", ("loguru", "_finish_request", "log_relay.py")),
    ("metrics (prometheus)", ("metrics.py", "prometheus_client")),
    ("security middleware", ("security.py",)),
    ("API: validation, geometry, JSON", ("api/",)),
    ("Flask / werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn gthread", ("gunicorn/", "server/worker.py")),
)


#: Leaf functions of a thread that waits (py-spy cannot tell waiting from running without pausing it).
#: Threads blocked inside C show their last Python frame as the leaf: the master's log relay thread
#: (os.read, or its sleep between batches; its real work is one file write per batch) and idle gunicorn
#: pool threads (`_worker` waiting in SimpleQueue.get for the next request, `_next_request_ready` in
#: poll for the same client's next one) and gunicorn's `chunk` (socket recv: a body still arriving).
WAITING = (
    "wait",
    "select",
    "poll",
    "get",
    "acquire",
    "sleep",
    "accept",
    "_recv_into",
    "recv_into",
    "readinto",
    "_read_loop",
    "_worker",
    "_next_request_ready",
    "chunk",
)


def categorise(stack: str) -> str | None:
    """The category of a sampled stack (root;...;leaf), or None when the thread was only waiting."""
    frames = stack.split(";")
    if frames[-1].split(" (")[0].rsplit(".", 1)[-1] in WAITING:
        return None
    for frame in reversed(frames):
        for name, markers in PROFILE_CATEGORIES:
            if any(marker in ";" + frame for marker in markers):
                return name
    return "other"


def profile(server: Server, model: str, home: Path, seconds: float = 8.0) -> dict[str, float] | None:
    """py-spy samples of every ai_service worker under concurrency 16, as % per category; None without py-spy."""
    spy = Path(PY).with_name("py-spy")
    if not spy.exists():  # beside the interpreter in a venv; else on the PATH (packages installed with --target)
        found = shutil.which("py-spy")
        if found is None:
            return None
        spy = Path(found)
    command = loadgen_command(server, model, 16, home, seconds + 4, 1)
    with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
        server.resume()
        try:
            load = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            time.sleep(2)
            subprocess.run(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(server.process.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--duration",
                    str(int(seconds)),
                    "-o",
                    raw.name,
                ],
                capture_output=True,
                timeout=seconds + 60,
            )
            load.wait(seconds + 120)
        finally:
            server.pause()
        counts: dict[str, float] = {}
        for line in Path(raw.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue  # a frame or command line that contains a line break
            category = categorise(stack)
            if category is not None:
                counts[category] = counts.get(category, 0) + int(count)
    total = sum(counts.values())
    return (
        {name: 100.0 * count / total for name, count in sorted(counts.items(), key=lambda i: -i[1])} if total else None
    )


# ---- report ---------------------------------------------------------------------------------------


def points_for(results: list[dict], server: str, model: str, concurrency: int) -> list[dict]:
    return [r for r in results if r["server"] == server and r["model"] == model and r["concurrency"] == concurrency]


def mean_of(results: list[dict], server: str, model: str, concurrency: int, key: str) -> float | None:
    values = [r[key] for r in points_for(results, server, model, concurrency)]
    return fmean(values) if values else None


def best_peer(results: list[dict], model: str, concurrency: int, peers: tuple[str, ...] = PEERS) -> tuple[str, float]:
    """The peer with the most req/s at this point (the one to beat), and its req/s; ("", 0) when none ran."""
    model = "resnet18-demo" if model == "resnet18-bf16" else model  # peers serve the fp32 model
    rates = {peer: mean_of(results, peer, model, concurrency, "rps") or 0.0 for peer in peers}
    name = max(rates, key=rates.get)
    return (name, rates[name]) if rates[name] else ("", 0.0)


def evaluate(results: list[dict], limits: dict) -> list[tuple[str, str, str]]:
    """(target, measured, PASS|MISS by …) for every target of issue 18, each against the best peer at its point."""
    rows = []

    def check(name: str, value: float | None, floor: float, measured: str = "") -> None:
        places = 3 if value is not None and abs(value - floor) < 0.01 else 2  # 0.996 must not read "1.00× MISS"
        verdict = "n/a" if value is None else ("PASS" if value >= floor else f"MISS by {floor - value:.{places}f}")
        rows.append((name, measured or ("—" if value is None else f"{value:.{places}f}×"), verdict))

    def against(model: str, peers: tuple[str, ...]) -> tuple[float | None, str]:
        ours = mean_of(results, "ai_service", model, 16, "rps")
        peer, theirs = best_peer(results, model, 16, peers)
        if not ours or not theirs:
            return None, "—"
        return ours / theirs, f"{ours / theirs:.2f}× ({ours:.1f} vs {peer} {theirs:.1f} req/s)"

    value, text = against("digits", PLAIN)
    check("digits c=16: ai_service ≥ 1.0 × the best plain Flask app", value, 1.0, text)
    value, text = against("digits", ("litserve",))
    check("digits c=16: ai_service ≥ 1.0 × LitServe", value, 1.0, text)
    value, text = against("resnet18-demo", PEERS)
    check("resnet18 c=16 (fp32): ai_service ≥ 1.2 × the best peer", value, 1.2, text)
    ours = mean_of(results, "ai_service", "resnet18-demo", 16, "rps")
    if "resnet18-demo" in limits:
        limit = limits["resnet18-demo"]["limit_ips"]
        check(
            "resnet18 c=16 (fp32): ai_service ≥ 90% of the in-process limit",
            ours / limit if ours else None,
            0.9,
            f"{ours / limit:.0%} ({ours:.1f} of {limit:.1f} img/s)" if ours else "—",
        )
    value, text = against("resnet18-bf16", PEERS)
    if value is not None:
        rows.append(("resnet18 c=16, served in bf16 (information): ai_service vs the best fp32 peer", text, "—"))
    p50 = {server: mean_of(results, server, "digits", 1, "p50_ms") for server in ("ai_service", *PLAIN)}
    plain = min((v for k, v in p50.items() if k != "ai_service" and v is not None), default=None)
    if p50["ai_service"] is not None and plain is not None:
        delta = p50["ai_service"] - plain
        rows.append(
            (
                "digits c=1: p50 ≤ the plain app's + 0.5 ms",
                f"{p50['ai_service']:.2f} vs {plain:.2f} ms ({delta:+.2f} ms)",
                "PASS" if delta <= 0.5 else f"MISS by {delta - 0.5:.2f} ms",
            )
        )
    ours_p50 = mean_of(results, "ai_service", "resnet18-demo", 1, "p50_ms")
    peers_p50 = [mean_of(results, peer, "resnet18-demo", 1, "p50_ms") for peer in PEERS]
    best = min((v for v in peers_p50 if v is not None), default=None)
    if ours_p50 is not None and best is not None:
        rows.append(
            (
                "resnet18 c=1 (fp32): p50 ≤ the best peer's",
                f"{ours_p50:.1f} vs {best:.1f} ms ({ours_p50 - best:+.1f} ms)",
                "PASS" if ours_p50 <= best else f"MISS by {ours_p50 - best:.1f} ms",
            )
        )
    errors = sum(sum(r["errors"].values()) for r in results)
    rows.append(("zero errors at every point", f"{errors} errors", "PASS" if errors == 0 else "MISS"))
    return rows


def render(
    results: list[dict], limits: dict, meta: dict, configs: dict[str, str], profiles: dict[str, dict[str, float] | None]
) -> str:
    lines = [
        "# Serving benchmark",
        "",
        f"Generated by `make bench-serving` (bench/serving.py) on {meta['date']}. "
        f"Machine: {meta['cpu']}, {meta['cores']} cores, {meta['memory_gb']} GiB; Python {meta['python']}, "
        f"torch {meta['torch']}. Device: **CPU only** — {meta['gpu']}",
        "",
        "resnet18 weights are random (seed 0): **timing only**, the predictions mean nothing. Payloads: a "
        "640×480 JPEG photo (resnet18, 224×224 input) and a 64×64 PNG digit (digits). Every point is a "
        f"closed loop of C clients from a separate load-generator process on loopback, "
        f"{meta['warmup']:g} s warm-up then {meta['durations']}; {repetitions_text()} so the noise is visible. "
        "All servers run at once but only the measured one is "
        "awake (the others are paused with SIGSTOP), and the servers take turns at every point, so drift in the "
        "machine's load hits all of them alike.",
        "",
        "## Servers",
        "",
    ]
    lines += [f"- **{name}**: {text}" for name, text in configs.items()]
    lines += [
        "",
        f"LitServe: {meta['litserve']}",
        "",
        "## The in-process limit (same machine, same cores)",
        "",
        "| model | decode+preprocess ms/image (1 core) | "
        + " | ".join(f"forward img/s @ {b}" for b in BATCHES)
        + " | limit img/s (best batch) |",
        "|---|---|" + "---|" * len(BATCHES) + "---|",
    ]
    for model in (m for m in MODELS if m in limits):
        limit = limits[model]
        lines.append(
            f"| {model} | {limit['preprocess_ms']:.2f} | "
            + " | ".join(f"{limit['forward_ips'][b]:.1f}" for b in BATCHES)
            + f" | **{limit['limit_ips']:.1f}** (batch {limit['best_batch']}) |"
        )
    lines += [
        "",
        "limit = 1 / (decode+preprocess time + 1 / forward rate at the best batch size); resnet18-bf16's forward "
        "runs under bf16 autocast, as the service runs it.",
        "",
    ]
    for model in (m for m in MODELS if m in limits and limits[m].get("precision")):
        check = limits[model]["precision"]
        if check["used"] != "fp32" or check["requested"] != "fp32":
            lines.append(
                f"- {model}: asked for {check['requested']}, served in **{check['used']}**; load-time check: "
                f"{check['reason']}."
            )
    lines += [
        "",
        "## Results",
        "",
        "req/s: mean of the repetitions (each repetition in brackets); latency of the "
        "first repetition; % limit = req/s ÷ the model's in-process limit; server CPU = CPU time of all the "
        "server's processes per answered request (mean of the repetitions; independent of how busy the "
        "machine was); other work = CPU used by processes outside the benchmark during the point, in % of "
        "the machine (first repetition).",
        "",
    ]
    contenders = (*PLAIN, "ai_service", "litserve")
    variants = [name for name in dict.fromkeys(r["server"] for r in results) if name not in contenders]
    for model in MODELS:
        if model not in limits:
            continue
        lines += [
            f"### {model}",
            "",
            "| c | server | req/s | vs best peer | % limit | p50 ms | p95 ms | p99 ms | errors | "
            "mean batch | server CPU ms/req | other work |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for concurrency in CONCURRENCY:
            for server in (*contenders, *variants):  # variants: bf16, another thread count
                runs = points_for(results, server, model, concurrency)
                if not runs:
                    continue
                rps = fmean(r["rps"] for r in runs)
                each = " / ".join(format(r["rps"], ".1f") for r in runs)
                reps = f" ({each})" if len(runs) > 1 else ""
                first = runs[0]
                errors = sum(sum(r["errors"].values()) for r in runs)
                cpu = fmean(r["server_cpu_ms"] for r in runs)
                peer, peer_rps = best_peer(results, model, concurrency)
                versus = f"{rps / peer_rps:.2f}× {peer}" if peer_rps and server not in PEERS else "—"
                lines.append(
                    f"| {concurrency} | {server} | {rps:.1f}{reps} | {versus} | "
                    f"{100 * rps / limits[model]['limit_ips']:.0f}% | {first['p50_ms']:.1f} | "
                    f"{first['p95_ms']:.1f} | {first['p99_ms']:.1f} | {errors} | "
                    f"{first['mean_batch_size'] if first['mean_batch_size'] is not None else '—'} | "
                    f"{cpu:.2f} | {first['other_cpu_pct']:.0f}% |"
                )
        lines.append("")
    lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict} |" for name, value, verdict in evaluate(results, limits)]
    lines += profile_table(results, profiles)
    other = [r["other_cpu_pct"] for r in results]
    busy = sum(value > BUSY_PCT for value in other)
    again = sum(r["attempts"] > 1 for r in results)
    lines += [
        "",
        f"Other work on the machine during the points: {min(other):.0f}% to {max(other):.0f}% of its CPU "
        f"(mean {fmean(other):.0f}%). {again} point(s) were measured again because other processes used more "
        f"than {BUSY_PCT:g}% of the machine during them (the quietest attempt is kept)"
        + (f"; {busy} point(s) stayed above that, so their req/s are noisier." if busy else "."),
        "",
    ]
    return "\n".join(lines)


def profile_table(results: list[dict], profiles: dict[str, dict[str, float] | None]) -> list[str]:
    """Where ai_service's worker CPU goes at concurrency 16, in % of samples and ms per request."""
    if not any(profiles.values()):
        return ["", "No profile: --no-profile was given, or py-spy is not installed (`pip install py-spy`).", ""]
    lines = [
        "",
        "## Where ai_service's time goes (py-spy, concurrency 16)",
        "",
        "Samples of every thread of every worker that was running (threads waiting on a lock, queue or "
        "socket are left out), by the innermost part of the request they were in; ms/request = share × "
        "the server CPU per request measured at c=16.",
        "",
        "| part | " + " | ".join(f"{model} %" + f" | {model} ms/req" for model in profiles) + " |",
        "|---|" + "---|---|" * len(profiles),
    ]
    names = [name for name, _ in PROFILE_CATEGORIES] + ["other"]
    cpu = {model: mean_of(results, "ai_service", model, 16, "server_cpu_ms") or 0.0 for model in profiles}
    for name in names:
        cells = []
        for model, shares in profiles.items():
            share = (shares or {}).get(name, 0.0)
            cells.append(f"{share:.1f}% | {share * cpu[model] / 100:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


# ---- history on vs off ------------------------------------------------------------------------------

#: Passes of the history comparison at c=16 (the servers take turns within each pass).
HISTORY_PASSES = 7
#: Issue 14: history may cost at most this share of req/s.
HISTORY_BUDGET = 0.05


def history_contenders(production: Server) -> list[Server]:
    """The `make run` defaults (history on, SQLite in var/) and the same server with AI_SERVICE_HISTORY=off."""
    port = free_port()
    off = Server(
        "ai_service/history off",
        production.command,
        {**production.env, "AI_SERVICE_HISTORY": "off", "AI_SERVICE_BIND": f"127.0.0.1:{port}"},
        port,
        production.paths,
        production.health,
        production.config + "; AI_SERVICE_HISTORY=off",
    )
    return [production, off]


def history_rows(home: Path) -> int:
    """Rows the history-on server recorded (warm-ups included): proof that history really ran."""
    import sqlite3

    with sqlite3.connect(home / "var" / "ai_service.db") as connection:
        return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def render_history(
    results: list[dict], meta: dict, rows: int, config: str, profiles: dict[str, dict[str, float] | None]
) -> str:
    """The history-on/off table: req/s per pass, the median of each, the cost against the 5% budget, and the
    history's share of the worker CPU in a py-spy profile (steadier than a difference of two noisy rates)."""
    lines = [
        "# History on vs off",
        "",
        f"Generated by `bench/serving.py --history` on {meta['date']}. Machine: {meta['cpu']}, {meta['cores']} "
        f"cores; torch {meta['torch']}; CPU only. Both servers: {config}. History on is the default of `make run` "
        "(SQLite in var/, WAL, rows written by the background writer in batches); off is AI_SERVICE_HISTORY=off. "
        f"c=16 closed loop from bench/loadgen.py, {meta['passes']} passes, the two servers taking turns in each.",
        "",
        "| model | pass | on: req/s | off: req/s | on: p99 ms | off: p99 ms | on: CPU ms/req | off: CPU ms/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for model in MODELS:
        on = [p for p in results if p["model"] == model and p["server"] == "ai_service"]
        off = [p for p in results if p["model"] == model and p["server"] == "ai_service/history off"]
        for index, (a, b) in enumerate(zip(on, off), start=1):
            lines.append(
                f"| {model} | {index} | {a['rps']:.1f} | {b['rps']:.1f} | {a['p99_ms']:.1f} | {b['p99_ms']:.1f} "
                f"| {a['server_cpu_ms']} | {b['server_cpu_ms']} |"
            )
        on_rps, off_rps = sorted(p["rps"] for p in on), sorted(p["rps"] for p in off)
        median_on, median_off = on_rps[len(on_rps) // 2], off_rps[len(off_rps) // 2]
        cost = 1 - median_on / median_off
        cpu_on = sorted(p["server_cpu_ms"] for p in on)[len(on) // 2]
        cpu_off = sorted(p["server_cpu_ms"] for p in off)[len(off) // 2]
        verdicts.append(
            f"- **{model}**: median {median_on:.1f} req/s with history, {median_off:.1f} without: "
            f"cost {cost * 100:+.1f}% of req/s (budget {HISTORY_BUDGET * 100:.0f}%: "
            f"{'PASS' if cost <= HISTORY_BUDGET else 'FAIL'}); server CPU per request {cpu_on} vs {cpu_off} ms "
            f"({(cpu_on / cpu_off - 1) * 100:+.1f}%)"
        )
    errors = sum(sum(p["errors"].values()) for p in results)
    lines += ["", *verdicts, "", f"Rows recorded by the history-on server: {rows}; request errors: {errors}.", ""]
    category = HISTORY_CATEGORY
    shares = [
        f"{model} {profile.get(category, 0.0):.1f}%" for model, profile in profiles.items() if profile is not None
    ]
    if shares:
        lines += [
            f"py-spy profile of the history-on server at c=16, share of worker samples in `{category}` "
            f"(the request thread's row building, the background writer, SQLAlchemy, sqlite3): {', '.join(shares)}.",
            "",
        ]
    return "\n".join(lines)


def write_results(text: str, path: Path = RESULTS) -> None:
    """The generated part of a results file, keeping the hand-written analysis below ANALYSIS_MARKER."""
    kept = ""
    if path.exists() and ANALYSIS_MARKER in path.read_text():
        kept = path.read_text().split(ANALYSIS_MARKER, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n" + ANALYSIS_MARKER + (kept or "\n"))


def machine(durations: dict[str, float], warmup: float, litserve: str) -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = (
        "a CUDA GPU is visible but this run measured the CPU"
        if torch.cuda.is_available()
        else "no GPU was lent to this run, so nothing here measures CUDA (batching buys far more on a GPU)"
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": cores(),
        "memory_gb": round(memory),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": gpu,
        "warmup": warmup,
        "litserve": litserve,
        "durations": ", ".join(f"{seconds:g} s ({model})" for model, seconds in durations.items()),
    }


def history_run(
    contenders: list[Server], home: Path, durations: dict, warmup: float, workdir: Path, no_write: bool, passes: int
) -> None:
    """--history: the `make run` server with history on and off, side by side at c=16."""
    production = next(server for server in contenders if server.name == "ai_service")
    pair = history_contenders(production)
    log_path = workdir / "servers.log"
    profiles: dict[str, dict[str, float] | None] = {}
    try:
        results = run_all(pair, home, (16,), ((16,),) * (passes - 1), durations, warmup, log_path, profiles)
    except Exception:
        print(log_path.read_text()[-4000:] if log_path.exists() else "", file=sys.stderr)
        raise
    (workdir / "history-points.json").write_text(json.dumps(results))
    meta = {**machine(durations, warmup, ""), "passes": passes}
    text = render_history(results, meta, history_rows(home), production.config, profiles)
    print(text)
    if not no_write:
        HISTORY_RESULTS.write_text(text)
        print(f"-- wrote {HISTORY_RESULTS.relative_to(ROOT)}")


# ---- the result cache: a 50%-repeat workload -----------------------------------------------------------


def cache_contenders(production: Server) -> list[Server]:
    """`make run` (result cache on, the default) and the same with AI_SERVICE_RESULT_CACHE=off, for digits and the fp32
    resnet18; named apart from "ai_service" so the main tables and the profile never mix them up."""
    pair = []
    for name, extra in (("cache on", {}), ("cache off", {"AI_SERVICE_RESULT_CACHE": "off"})):
        port = free_port()
        pair.append(
            Server(
                f"ai_service/{name}",
                production.command,
                {**production.env, **extra, "AI_SERVICE_BIND": f"127.0.0.1:{port}"},
                port,
                {m: path for m, path in production.paths.items() if m != "resnet18-bf16"},
                production.health,
                production.config + ("" if not extra else "; AI_SERVICE_RESULT_CACHE=off"),
            )
        )
    return pair


def render_cache(results: list[dict]) -> list[str]:
    """The cache-on/off table per pass, and the median gain."""
    lines = [
        "## Result cache: half the requests repeat an input",
        "",
        f"ai_service with `make run` settings, result cache on (the default: in-process LRU) vs "
        f"AI_SERVICE_RESULT_CACHE=off; c={CACHE_CONCURRENCY} closed loop, {CACHE_PASSES} passes taking turns; "
        f"{CACHE_REPEAT_SHARE:.0%} of the requests send one repeated input, the others each a new one "
        "(bench/loadgen.py --repeat-share). cached = share of answers that said `cached: true`.",
        "",
        "| model | pass | on: req/s | off: req/s | on: p50 ms | off: p50 ms | on: cached | on: CPU ms/req | "
        "off: CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for model in dict.fromkeys(r["model"] for r in results):
        on = [r for r in results if r["model"] == model and r["server"] == "ai_service/cache on"]
        off = [r for r in results if r["model"] == model and r["server"] == "ai_service/cache off"]
        for index, (a, b) in enumerate(zip(on, off), start=1):
            lines.append(
                f"| {model} | {index} | {a['rps']:.1f} | {b['rps']:.1f} | {a['p50_ms']:.1f} | {b['p50_ms']:.1f} | "
                f"{a.get('cached_share', 0):.0%} | {a['server_cpu_ms']} | {b['server_cpu_ms']} |"
            )
        if on and off:
            median_on = sorted(r["rps"] for r in on)[len(on) // 2]
            median_off = sorted(r["rps"] for r in off)[len(off) // 2]
            verdicts.append(
                f"- **{model}**: median {median_on:.1f} req/s with the cache, {median_off:.1f} without "
                f"({median_on / median_off:.2f}×)."
            )
    return [*lines, "", *verdicts, ""]


def cache_run(production: Server, home: Path, durations: dict, warmup: float, workdir: Path) -> list[str]:
    """The 50%-repeat workload against the cache-on and cache-off servers; the report's lines."""
    log_path = workdir / "servers-cache.log"
    try:
        results = run_all(
            cache_contenders(production),
            home,
            (CACHE_CONCURRENCY,),
            ((CACHE_CONCURRENCY,),) * (CACHE_PASSES - 1),
            durations,
            warmup,
            log_path,
            {},
            repeat_share=CACHE_REPEAT_SHARE,
        )
    except Exception:
        print(log_path.read_text()[-4000:] if log_path.exists() else "", file=sys.stderr)
        raise
    return render_cache(results)


def selection(only: str | None) -> tuple[tuple[str, ...], set[str], bool, bool]:
    """`--only` words → (models, servers (empty: all), run the main comparison, run the cache section)."""
    words = {word.strip() for word in (only or "").split(",") if word.strip()}
    unknown = words - set(MODEL_ALIASES) - set(MODELS) - {"main", "cache", *PEERS, "ai_service"}
    if unknown:
        raise SystemExit(
            f"--only: unknown {', '.join(sorted(unknown))} (models: {', '.join(MODEL_ALIASES)}; "
            f"servers: {', '.join(PLAIN)}, ai_service, litserve; sections: main, cache)"
        )
    models = tuple(m for m in MODELS if m in words or any(m in MODEL_ALIASES.get(w, ()) for w in words))
    servers_wanted = words & {*PEERS, "ai_service"}
    sections = words & {"main", "cache"}
    main_part = not sections or "main" in sections or bool(servers_wanted)
    cache_part = (not sections and not servers_wanted) or "cache" in sections
    return models or MODELS, servers_wanted, main_part, cache_part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short points (smoke test, numbers are rough)")
    parser.add_argument(
        "--only",
        help="comma-separated subset (no write): models (digits, resnet18, bf16), servers (naive, plain, "
        "plain-gthread, ai_service, litserve), sections (main, cache)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results/serving.md")
    parser.add_argument("--concurrency", help="comma-separated concurrency levels instead of 1,4,16,32 (no write)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="AI_SERVICE_X=VALUE",
        help="try another ai_service configuration (implies --no-write)",
    )
    parser.add_argument("--models", help="comma-separated models instead of all (no write)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of ai_service")
    parser.add_argument(
        "--compare", metavar="REV", help="also run ai_service at git revision REV, side by side (implies --no-write)"
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="ai_service with history on vs off at c=16; writes bench/results/history.md",
    )
    parser.add_argument("--passes", type=int, default=HISTORY_PASSES, help="passes of --history (default %(default)s)")
    parser.add_argument("--measure-limit", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global MODELS, PROFILE
    if args.models:
        MODELS = tuple(name for name in MODELS if name in args.models.split(","))
    MODELS, wanted, main_part, cache_part = selection(args.only)
    PROFILE = not args.no_profile
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up that stops the servers
    if args.measure_limit:
        print(json.dumps(measure_limit(args.measure_limit)))
        return
    durations = {"digits": 8.0, "resnet18-demo": 12.0, "resnet18-bf16": 12.0}
    if args.quick:
        durations = {"digits": 3.0, "resnet18-demo": 4.0, "resnet18-bf16": 4.0}
    warmup = 1.0 if args.quick else 2.0
    started = time.monotonic()
    text = ""
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as workdir:
        home = Path(workdir) / "home"
        prepare_home(home)
        print("-- measuring the in-process limit", flush=True)
        limits = json.loads(
            subprocess.run(
                [PY, __file__, "--models", ",".join(MODELS), "--measure-limit", str(home)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for limit in limits.values():
            limit["forward_ips"] = {int(size): rate for size, rate in limit["forward_ips"].items()}
        for model, limit in limits.items():
            print(f"   {model}: {limit}", flush=True)
        has_litserve, litserve_text = litserve_status()
        contenders = servers(home, has_litserve)
        production = next(s for s in contenders if s.name == "ai_service")
        if args.history:
            history_run(contenders, home, durations, warmup, Path(workdir), args.no_write or args.quick, args.passes)
            print(f"-- finished in {time.monotonic() - started:.0f} s", flush=True)
            return
        if wanted:
            contenders = [s for s in contenders if s.name.split(":")[0] in wanted]
        if args.compare:
            worktree = Path(workdir) / "compare"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.compare],
                check=True,
                capture_output=True,
            )
            other = ai_service_at(production, args.compare, worktree)
            other.port = free_port()
            other.env["AI_SERVICE_BIND"] = f"127.0.0.1:{other.port}"
            contenders.insert(contenders.index(production) + 1 if production in contenders else 0, other)
        for server in [*contenders, production]:
            if server.name == "ai_service" and args.set and "overridden" not in server.config:
                server.env.update(item.split("=", 1) for item in args.set)
                server.config += f" — overridden: {', '.join(args.set)}"
        points = tuple(int(c) for c in args.concurrency.split(",")) if args.concurrency else CONCURRENCY
        log_path = Path(workdir) / "servers.log"
        meta = machine(durations, warmup, litserve_text)
        if main_part:
            try:
                profiles: dict[str, dict[str, float] | None] = {}
                repeated = () if args.concurrency else REPEATED
                results = run_all(contenders, home, points, repeated, durations, warmup, log_path, profiles)
            except Exception:
                print(log_path.read_text()[-4000:] if log_path.exists() else "", file=sys.stderr)
                raise
            configs = {s.name.split(":")[0]: s.config for s in contenders}
            text = render(results, limits, meta, configs, profiles)
        if cache_part:
            text += "\n" + "\n".join(cache_run(production, home, durations, warmup, Path(workdir)))
    print(text)
    print(f"-- finished in {time.monotonic() - started:.0f} s", flush=True)
    if args.compare:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    if not (args.no_write or args.quick or args.set or args.concurrency or args.only or args.models or args.compare):
        write_results(text)
        print(f"-- wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
