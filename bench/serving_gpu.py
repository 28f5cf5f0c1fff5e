"""Serving on a CUDA GPU: ai_service as `make run` starts it there, its variants (batching off, one worker,
torch.compile, bf16 and fp16), LitServe and the plain Flask app on the same GPU, at concurrency 1, 16 and 64.

    make bench-serving-gpu                                    # needs CUDA; writes bench/results/serving-gpu.md
    python bench/serving_gpu.py --device cpu --quick --out /tmp/g    # the script itself, without a GPU (no write)

1. The in-process limit, in its own process: decode+preprocess ms per image on one core (the CPU side, shared by all
   cores) and forward images/s on the device at batch 1/8/32/64 in each model's precision (synchronized timing).
2. bench/gpu_registry_check.py (load, offload, reload, unload, LRU eviction in GPU memory), while the servers start.
3. Every server starts side by side, each is warmed with one request per model (torch.compile compiles its batch
   buckets then), then all are paused (SIGSTOP) and woken one at a time; every point is driven by one loadgen process
   per 16 clients (one Python client process tops out near 3,000 requests/s), merged into one latency distribution.
4. py-spy profiles ai_service's workers at c=16 on resnet18 and digits (when py-spy is installed).
5. Writes the tables to bench/results/serving-gpu.md (text below serving.ANALYSIS_MARKER is kept) and, with --out,
   the raw points and the servers' log there too. A point that would end past --budget seconds is skipped and said.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import fmean

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving  # noqa: E402 (bench/ on the path)
from loadgen import multipart_body, percentile  # noqa: E402
from serving import PAUSED_TIMEOUT, PY, ROOT, Server  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "serving-gpu.md"
MODELS = ("resnet18-demo", "resnet18-bf16", "resnet18-fp16", "digits")
CONCURRENCY = (1, 16, 64)
BATCHES = (1, 8, 32, 64)
#: Clients per loadgen process.
CLIENTS_PER_PROCESS = 16
FP16_ENTRY = """  - name: resnet18-fp16
    kind: state_dict
    architecture: resnet18
    num_classes: 1000
    weights: resnet18.pt
    input_size: [224, 224]
    labels_file: labels.txt
    precision: fp16
    precision_tolerance: 0
    description: the same resnet18 served in fp16 (benchmark, timing only)
"""


def prepare_home(home: Path) -> None:
    """serving.py's home (resnet18 fp32 and bf16, payloads) plus an fp16 entry."""
    serving.prepare_home(home)
    with (home / "models.yaml").open("a") as models:
        models.write(FP16_ENTRY)


# ---- the in-process limit -------------------------------------------------------------------------


def measure_limit(home: Path, device_name: str, seconds: float) -> dict:
    """Per model: decode+preprocess ms on one core, forward images/s on the device per batch size."""
    import torch

    from ai_service.imaging.io import decode_image
    from ai_service.models.base import ModelOptions
    from ai_service.models.catalog import build_registry
    from ai_service.settings import load_settings

    device = torch.device(device_name)
    settings = load_settings({"home": str(home), "log_level": "WARNING", "log_to_file": False})
    registry = build_registry(settings, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cores = serving.cores()
    report = {}
    for name in MODELS:
        model = registry.get(name)
        data = (home / serving.PAYLOAD[name]).read_bytes()
        torch.set_num_threads(1)

        def prepare(model=model, data=data) -> torch.Tensor:
            return model.preprocess([decode_image(data, target_size=model.decode_size())], ModelOptions()).tensor

        sample = prepare()
        preprocess_ms = 1000.0 / serving.best_rate(lambda prepare=prepare: (prepare(), 1)[1], seconds)
        torch.set_num_threads(cores)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        network = model.network.to(memory_format=torch.channels_last)
        used = model.precision_in_use or "fp32"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(used, torch.float32)
        forward = {}
        for size in BATCHES:
            batch = sample.expand(size, *sample.shape[1:]).contiguous(memory_format=torch.channels_last).to(device)

            def step(network=network, batch=batch, size=size) -> int:
                network(batch)
                sync()
                return size

            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                for _ in range(3):  # cuDNN picks its algorithms for this shape
                    step()
                forward[size] = serving.best_rate(step, seconds)
        best = max(forward, key=forward.get)
        report[name] = {
            "precision": used,
            "check": model.precision_check.as_dict() if model.precision_check is not None else None,
            "preprocess_ms": round(preprocess_ms, 3),
            "cpu_side_ips": round(cores * 1000.0 / preprocess_ms, 1),
            "forward_ips": {size: round(rate, 1) for size, rate in forward.items()},
            "best_batch": best,
            # The CPU decodes while the GPU runs the forward: the slower of the two sides bounds the service.
            "limit_ips": round(min(cores * 1000.0 / preprocess_ms, forward[best]), 1),
        }
    return report


# ---- servers --------------------------------------------------------------------------------------


def gunicorn(*arguments: str) -> list[str]:
    """`python -m gunicorn`: works where packages were installed without their scripts (the GPU machine)."""
    return [PY, "-m", "gunicorn", *arguments]


def contenders(home: Path, device: str) -> list[Server]:
    """ai_service as `make run` starts it on this machine and three variants, LitServe, the plain Flask app."""
    n = serving.cores()
    weights = str(home / "models" / "resnet18.pt")
    fp32 = ("resnet18-demo", "digits")
    base = {
        "AI_SERVICE_HOME": str(home),
        "AI_SERVICE_DEVICE": device,
        "AI_SERVICE_TIMEOUT": str(PAUSED_TIMEOUT),
        "AI_SERVICE_MAX_REQUESTS": "0",
    }

    def ours(name: str, models: tuple[str, ...], config: str, levels: tuple[int, ...] = (), **extra: str) -> Server:
        env = {**base, "AI_SERVICE_PRELOAD": ",".join(models), **extra}
        return Server(
            name,
            gunicorn("-c", str(ROOT / "gunicorn.conf.py"), "app:app"),
            env,
            0,
            {model: "/api/v1/predict" for model in models},
            "/api/v1/health",
            config,
            levels=levels,
        )

    found = [
        ours(
            "ai_service",
            MODELS,
            f"the defaults of `make run` on this machine (AI_SERVICE_WORKERS=0: one worker per core, {n} here, all on "
            "the GPU; 12 threads; batch ≤ the engine's CUDA default of 32, delay ≤ 5 ms; access log, metrics, history "
            "and result cache on); "
            "models preloaded, worker recycling off, long worker timeout (servers sit paused)",
        ),
        ours(
            "ai_service/1 worker",
            fp32,
            "the same with AI_SERVICE_WORKERS=1 (one process feeds the GPU: the default until 2026-11-28); c=16 only",
            (16,),
            AI_SERVICE_WORKERS="1",
        ),
        ours(
            "ai_service/no batching",
            fp32,
            "the same with AI_SERVICE_MAX_BATCH_SIZE=1 (batching off: one image per forward); c=16 and 64 only (at c=1 "
            "every batch is one image anyway)",
            (16, 64),
            AI_SERVICE_MAX_BATCH_SIZE="1",
        ),
        ours(
            "ai_service/compile",
            ("resnet18-demo",),
            "the same with AI_SERVICE_COMPILE=1 (torch.compile, inductor, batches padded to power-of-two buckets, "
            "each compiled by the warm-up request) and 2 workers (every worker compiles its own); c=1 and 16 only",
            (1, 16),
            AI_SERVICE_WORKERS="2",
            AI_SERVICE_COMPILE="1",
            AI_SERVICE_REQUEST_TIMEOUT_S="900",
            # The CPU smoke test checks the plumbing, not inductor (minutes of C++ compiles on 2 cores).
            **({"AI_SERVICE_COMPILE_BACKEND": "eager"} if device == "cpu" else {}),
        ),
    ]
    for model in fp32:
        command = [PY, str(ROOT / "bench" / "baselines" / "litserve_server.py"), "--model", model, "--port", "{port}"]
        command += ["--workers", "4", "--threads", "1", "--max-batch-size", "32", "--accelerator", device]
        found.append(
            Server(
                f"litserve:{model}",
                command,
                {"BENCH_RESNET_WEIGHTS": weights},
                0,
                {model: "/predict"},
                "/health",
                f"LitServe on {device}: 4 inference workers (workers_per_device) × 1 torch thread, max_batch_size 32, "
                "batch_timeout 5 ms",
            )
        )
    command = gunicorn("-k", "sync", "-w", str(n), "-b", "127.0.0.1:{port}", "--timeout", str(PAUSED_TIMEOUT))
    command += ["--pythonpath", str(ROOT), "--log-level", "info", "naive_flask:app"]
    found.append(
        Server(
            "plain",
            command,
            {
                "BENCH_RESNET_WEIGHTS": weights,
                "BENCH_TORCH_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "BENCH_DEVICE": device,
            },
            0,
            {model: "/predict" for model in fp32},
            "/health",
            f"the plain Flask app on {device}: gunicorn sync, {n} workers (one per core) × 1 torch thread, "
            "one image per forward",
            cwd=serving.BASELINES,
            worker="sync",
        )
    )
    return serving.with_ports(found)


def warm(server: Server, model: str, home: Path, timeout: float) -> tuple[float, int | str]:
    """One request, waited for as long as it takes (torch.compile compiles on the first batch): seconds and status."""
    body, content_type = multipart_body(home / serving.PAYLOAD[model], {"model": model}, "warmupwarmupwarmup")
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request("POST", server.paths[model], body, {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        status: int | str = response.status
    except (OSError, http.client.HTTPException) as error:
        status = type(error).__name__
    finally:
        connection.close()
    return time.perf_counter() - started, status


# ---- load -----------------------------------------------------------------------------------------


def load_point(server: Server, model: str, concurrency: int, home: Path, duration: float, warmup: float) -> dict:
    """One closed-loop point from ceil(c/16) loadgen processes started together, merged."""
    processes = max(1, -(-concurrency // CLIENTS_PER_PROCESS))
    shares = [concurrency // processes + (index < concurrency % processes) for index in range(processes)]
    with tempfile.TemporaryDirectory(prefix="loadgen-") as folder:
        runs = []
        for index, clients in enumerate(shares):
            command = serving.loadgen_command(server, model, clients, home, duration, warmup)
            command += ["--latencies-out", str(Path(folder) / f"{index}.json")]
            if index == 0:
                command += ["--watch-pgid", str(server.process.pid)]
            runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        outputs = [json.loads(run.communicate(timeout=duration + warmup + 180)[0]) for run in runs]
        raw = [json.loads((Path(folder) / f"{index}.json").read_text()) for index in range(processes)]
    latencies = sorted(value for part in raw for value in part["latencies_ms"])
    batches = [size for part in raw for size in part["batch_sizes"]]
    errors: dict[str, int] = {}
    for output in outputs:
        for status, count in output["errors"].items():
            errors[status] = errors.get(status, 0) + count
    first = outputs[0]
    first_count = first["ok"] + sum(first["errors"].values())
    total = max(1, len(latencies) + sum(errors.values()))
    seconds = first["seconds"]
    return {
        "concurrency": concurrency,
        "loadgen_processes": processes,
        "ok": len(latencies),
        "errors": errors,
        "rps": round(sum(output["rps"] for output in outputs), 2),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "mean_batch_size": round(fmean(batches), 2) if batches else None,
        # Process 0 watched the server over (nearly) the same window as the others: its CPU over all requests.
        "server_cpu_ms": round(first["server_cpu_ms"] * first_count / total, 2) if first["server_cpu_ms"] else None,
        "seconds": seconds,
    }


def schedule(servers: list[Server]) -> list[tuple[str, int, Server]]:
    """(model, concurrency, server), servers taking turns at every point."""
    order = []
    for model in MODELS:
        for index, concurrency in enumerate(CONCURRENCY):
            serving_it = [
                server
                for server in servers
                if model in server.paths and (not server.levels or concurrency in server.levels)
            ]
            turn = index % len(serving_it) if serving_it else 0
            order += [(model, concurrency, server) for server in serving_it[turn:] + serving_it[:turn]]
    return order


# ---- report ---------------------------------------------------------------------------------------


def render(meta: dict, limits: dict, configs: dict, warmups: dict, results: list[dict], skipped: list[str]) -> str:
    lines = [
        "# Serving on a GPU: ai_service vs LitServe vs a plain Flask app",
        "",
        f"Generated by `bench/serving_gpu.py` on {meta['date']}: {meta['gpu']}, {meta['cores']} CPU cores; torch "
        f"{meta['torch']}, Python {meta['python']}. Points of {meta['duration']} s after {meta['warmup']} s of "
        "warm-up, each measured once (the lease is short), clients on the same machine (loopback, keep-alive, a fresh "
        "multipart boundary per request, every request a new input). resnet18 has random weights (timing only).",
        "",
        "## The in-process limit",
        "",
        "| model | precision (check) | decode+preprocess ms/image, 1 core | CPU side, all cores, img/s | "
        + " | ".join(f"forward b={size} img/s" for size in BATCHES)
        + " | limit img/s |",
        "|---|---|---|---|" + "---|" * len(BATCHES) + "---|",
    ]
    for model, limit in limits.items():
        check = limit["check"]
        check_text = f"{limit['precision']} ({check['reason']})" if check else limit["precision"]
        forwards = " | ".join(
            str(limit["forward_ips"].get(str(size), limit["forward_ips"].get(size))) for size in BATCHES
        )
        lines.append(
            f"| {model} | {check_text} | {limit['preprocess_ms']} | {limit['cpu_side_ips']} | {forwards} | "
            f"{limit['limit_ips']} |"
        )
    lines += ["", "## Servers", ""]
    lines += [f"- **{name}**: {config}" for name, config in configs.items()]
    lines += ["", "Warm-up (first request per model, seconds: torch.compile compiles its buckets here):", ""]
    lines += [
        f"- {name} {model}: {seconds:.1f} s, status {status}" for (name, model), (seconds, status) in warmups.items()
    ]
    for model in MODELS:
        rows = [point for point in results if point["model"] == model]
        if not rows:
            continue
        lines += [
            "",
            f"## {model}",
            "",
            "| server | c | req/s | × best peer | p50 ms | p99 ms | mean batch | server CPU ms/req | errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for concurrency in CONCURRENCY:
            here = [point for point in rows if point["concurrency"] == concurrency]
            peers = [
                point["rps"]
                for point in results
                if point["concurrency"] == concurrency
                and point["server"] in ("litserve", "plain")
                and point["model"] in (model, base_model(model))
            ]
            best = max(peers, default=0.0)
            for point in sorted(here, key=lambda p: -p["rps"]):
                ratio = f"{point['rps'] / best:.2f}×" if best and point["server"] not in ("litserve", "plain") else ""
                lines.append(
                    f"| {point['server']} | {concurrency} | {point['rps']:.1f} | {ratio} | {point['p50_ms']} | "
                    f"{point['p99_ms']} | {point['mean_batch_size']} | {point['server_cpu_ms']} | "
                    f"{point['errors'] or ''} |"
                )
    if skipped:
        lines += ["", "Skipped (past the time budget): " + ", ".join(skipped)]
    return "\n".join(lines) + "\n"


def base_model(model: str) -> str:
    """Peers serve the fp32 resnet18 only: reduced-precision ai_service is compared with their fp32."""
    return "resnet18-demo" if model.startswith("resnet18") else model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test of the script)")
    parser.add_argument("--quick", action="store_true", help="short points (numbers are rough; no write)")
    parser.add_argument("--out", type=Path, help="also write raw points, the limit and the servers' log here")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds after which remaining points are skipped")
    parser.add_argument(
        "--compile-wait", type=float, default=200.0, help="seconds from the start that torch.compile may take"
    )
    parser.add_argument("--no-write", action="store_true", help="leave bench/results/serving-gpu.md")
    parser.add_argument("--servers", help="comma-separated subset of the servers (names before any ':'; no write)")
    parser.add_argument("--no-limit", action="store_true", help="skip the in-process limit (no write)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of ai_service")
    parser.add_argument("--measure-limit", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 1.5
    if args.measure_limit:
        print(json.dumps(measure_limit(args.measure_limit, args.device, seconds)))
        return
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run on a GPU machine, or --device cpu for a smoke test of the script")
    started = time.monotonic()
    duration, warmup = (2.0, 0.5) if args.quick else (4.0, 1.0)
    out = args.out or Path(tempfile.mkdtemp(prefix="serving-gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU smoke test)",
        "cores": serving.cores(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "duration": duration,
        "warmup": warmup,
    }
    print(f"-- {meta}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serving-gpu-") as workdir:
        home = Path(workdir) / "home"
        prepare_home(home)
        print("-- measuring the in-process limit", flush=True)
        limits = {}
        if not args.no_limit:
            command = [PY, __file__, "--device", args.device, "--measure-limit", str(home)]
            measured = subprocess.run([*command, *(["--quick"] if args.quick else [])], capture_output=True, text=True)
            limits = json.loads(measured.stdout) if measured.returncode == 0 else {}
            if measured.returncode != 0:
                print(measured.stderr[-3000:], flush=True)
        for model, limit in limits.items():
            print(f"   {model}: {limit}", flush=True)
        (out / "limit.json").write_text(json.dumps(limits, indent=1))
        log_path = Path(workdir) / "servers.log"
        servers = contenders(home, args.device)
        if args.servers:
            servers = [server for server in servers if server.name.split(":")[0] in args.servers.split(",")]
        for server in servers:
            print(f"-- starting {server.name}", flush=True)
            server.spawn(log_path)
        results: list[dict] = []
        profiles: dict[str, dict[str, float] | None] = {}
        skipped: list[str] = []
        warmups: dict[tuple[str, str], tuple[float, int | str]] = {}
        registry_check = None
        try:
            ready = []
            for server in servers:
                try:
                    server.wait_ready(log_path, timeout=240)
                except RuntimeError as error:
                    print(f"   {error}", flush=True)
                    continue
                ready.append(server)
            # The compiled server compiles its buckets on its first request: in the background while the others are
            # warmed and the registry check runs (nothing is measured meanwhile), capped at --compile-wait.
            compiling = [
                threading.Thread(
                    target=lambda server=server, model=model: warmups.__setitem__(
                        (server.name, model), warm(server, model, home, timeout=args.compile_wait)
                    ),
                    daemon=True,
                )
                for server in ready
                if server.name == "ai_service/compile"
                for model in server.paths
            ]
            for thread in compiling:
                thread.start()
            for server in ready:
                if server.name != "ai_service/compile":
                    for model in server.paths:
                        warmups[(server.name, model)] = warm(server, model, home, timeout=120)
            if args.device.startswith("cuda"):
                print("-- bench/gpu_registry_check.py", flush=True)
                registry_check = subprocess.run(
                    [PY, str(ROOT / "bench" / "gpu_registry_check.py"), "--architecture", "resnet50"],
                    capture_output=True,
                    text=True,
                    timeout=240,
                )
                (out / "gpu_registry_check.txt").write_text(registry_check.stdout + registry_check.stderr)
                print(registry_check.stdout[-3000:], registry_check.stderr[-2000:], flush=True)
            for thread in compiling:
                thread.join(max(0.0, args.compile_wait - (time.monotonic() - started)))
            if any(thread.is_alive() for thread in compiling):
                print("   ai_service/compile is still compiling: its points are skipped", flush=True)
                ready = [server for server in ready if server.name != "ai_service/compile"]
                skipped.append(f"ai_service/compile (still compiling after {args.compile_wait:.0f} s)")
            for server in ready:
                server.pause()
            for model, concurrency, server in schedule(ready):
                label = f"{server.name} {model} c={concurrency}"
                if time.monotonic() - started + duration + warmup + 5 > args.budget:
                    skipped.append(label)
                    continue
                server.resume()
                try:
                    point = load_point(server, model, concurrency, home, duration, warmup)
                except Exception as error:  # noqa: BLE001 - one broken point must not lose the others
                    print(f"   {label}: {type(error).__name__}: {error}", flush=True)
                    skipped.append(f"{label} ({type(error).__name__})")
                    continue
                finally:
                    server.pause()
                point.update(server=server.name.split(":")[0], model=model)
                results.append(point)
                (out / "points.json").write_text(json.dumps(results, indent=1))
                print(
                    f"   {server.name:24s} {model:14s} c={concurrency:<3d} {point['rps']:8.1f} req/s  "
                    f"p50 {point['p50_ms']:7.1f}  p99 {point['p99_ms']:7.1f} ms  batch {point['mean_batch_size']}  "
                    f"server {point['server_cpu_ms']} ms CPU/req  errors {point['errors']}",
                    flush=True,
                )
            ours = next((server for server in ready if server.name == "ai_service"), None)
            for model in ("resnet18-demo", "digits") if ours is not None and not args.no_profile else ():
                if time.monotonic() - started + 20 > args.budget:
                    skipped.append(f"profile of {model}")
                    continue
                print(f"-- profiling ai_service on {model} at c=16 (py-spy)", flush=True)
                profiles[model] = serving.profile(ours, model, home, seconds=6.0)
        finally:
            for server in servers:
                if server.process is not None:
                    server.stop()
            if log_path.exists():  # the access log is long: keep what went wrong and the end
                lines = log_path.read_text(errors="replace").splitlines()
                kept = [line for line in lines if "WARNING" in line or "ERROR" in line or "Traceback" in line]
                (out / "servers.log").write_text("\n".join(kept[-2000:] + ["---- last lines ----"] + lines[-3000:]))
        configs = {server.name.split(":")[0]: server.config for server in servers}
        text = render(meta, limits, configs, warmups, results, skipped)
        if profiles:
            text += "\n".join(serving.profile_table(results, profiles))
    print(text)
    (out / "serving-gpu.md").write_text(text)
    registry_results = ROOT / "bench" / "results" / "gpu_registry_check.md"
    if registry_results.exists() and args.out:
        shutil.copy(registry_results, out / "gpu_registry_check.md")
    if not (args.quick or args.no_write or args.device == "cpu" or args.servers or args.no_limit):
        serving.write_results(text, RESULTS)
        print(f"-- wrote {RESULTS.relative_to(ROOT)}")
    print(f"-- finished in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
