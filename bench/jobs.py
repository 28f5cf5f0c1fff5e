"""Bulk jobs benchmark: resnet18 (random fixed-seed weights: TIMING ONLY) over 2,000 digit PNGs and 300 photos.

    make bench-jobs            # or: .venv/bin/python bench/jobs.py [--quick]

Every contender runs in fresh processes over the same files on this machine:

- plain loop: what a user would write first: load the torch model once, then open, resize, normalize and call the
  model per image in one process (torch's default threads). The clock covers the loop, not the model load.
- CLI pool: `ai-service predict FOLDER -r --model resnet18-demo --workers N -o results.jsonl`. The clock covers the
  whole command (process start, one model copy per worker, every image, the results file and the history rows);
  the same command on 16 small digits (one batch per worker) measures its start-up, which "after start-up"
  subtracts.
- Celery: `ai-service worker --concurrency N` (prefork: N processes, one model copy each) against Redis
  (--broker, default redis://127.0.0.1:6379/13). Workers are started and warmed (every process has loaded the
  model) before the clock starts, as in a running service; the clock runs from `submit` (the inputs stored in the
  database) until the job has succeeded.

Writes bench/results/jobs.md (not with --quick; text below ANALYSIS_MARKER is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import ANALYSIS_MARKER, ROOT, machine, prepare_home  # bench/ is the script's folder

RESULTS = ROOT / "bench" / "results" / "jobs.md"
PY = sys.executable
MODEL = "resnet18-demo"
COUNTS = {"digits": 2000, "photos": 300}
QUICK_COUNTS = {"digits": 24, "photos": 6}
DATASETS = {"digits": "64×64 PNG digits", "photos": "640×480 JPEG photos"}
CLI_WORKERS = (1, 2)
CELERY_CONCURRENCY = (1, 2)
#: Longest a job or a command may take before the benchmark gives up on it.
TIMEOUT_S = 1800


# ---- the inputs ----------------------------------------------------------------------------------


def make_digits(folder: Path, count: int) -> None:
    """scikit-learn's digits rendered as PNG files (all 1,797, then again at another size)."""
    from ai_service.models.builtin.digits_training import load_digits_split, render_digit

    split = load_digits_split()
    images = [*split.train_images, *split.test_images]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        size = 64 if index < len(images) else 48
        render_digit(images[index % len(images)], size).save(folder / f"digit{index:05d}.png")


def make_photos(folder: Path, count: int) -> None:
    """Distinct 640×480 JPEG photos: gradients, noise and ellipses, a different seed each."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    for index in range(count):
        rng = np.random.default_rng(index)
        photo = Image.fromarray((base * 0.6 + rng.normal(60, 25, base.shape)).clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(photo)
        for _ in range(40):
            x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 440))
            box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200)))
            draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        photo.filter(ImageFilter.GaussianBlur(1)).save(folder / f"photo{index:04d}.jpg", quality=90)


def files_of(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


# ---- plain loop ----------------------------------------------------------------------------------


def plain_loop(home: Path, folder: Path) -> None:
    """(In its own process) the loop a user writes by hand; prints images and seconds as JSON."""
    import torch
    import torchvision
    import torchvision.transforms.functional as F
    from PIL import Image

    model = torchvision.models.resnet18(num_classes=1000)
    model.load_state_dict(torch.load(home / "models" / "resnet18.pt", weights_only=True))
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    files = files_of(folder)
    labels = []
    started = time.perf_counter()
    with torch.inference_mode():
        for path in files:
            with Image.open(path) as image:
                pixels = image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
            tensor = (F.to_tensor(pixels) - mean) / std
            labels.append(int(model(tensor[None]).argmax()))
    print(json.dumps({"images": len(labels), "seconds": time.perf_counter() - started}))


def run_plain_loop(home: Path, folder: Path) -> dict:
    done = subprocess.run(
        [PY, __file__, "--plain-loop", str(home), str(folder)], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    if done.returncode != 0:
        raise RuntimeError(f"plain loop failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- CLI pool ------------------------------------------------------------------------------------


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "AI_SERVICE_HOME": str(home), "PYTHONPATH": str(ROOT), "AI_SERVICE_LOG_TO_FILE": "0"}


def run_cli(home: Path, folder: Path, workers: int, out: Path) -> dict:
    """The whole `ai-service predict` command, timed from outside; every input must be in the results."""
    command = [PY, "-m", "ai_service.cli", "predict", str(folder), "-r", "--model", MODEL, "--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "-o", str(out), "-q"], env=cli_env(home), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ai-service predict --workers {workers} failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = len(files_of(folder))
    if len(records) != expected or any(record["status"] != "ok" for record in records):
        raise RuntimeError(f"ai-service predict --workers {workers}: {len(records)} results for {expected} inputs")
    return {"images": expected, "seconds": seconds}


# ---- Celery --------------------------------------------------------------------------------------


def wait_job(runtime, job_id: str, timeout: float = TIMEOUT_S) -> dict:
    """Poll the job until it has finished (the way the Jobs page does)."""
    from ai_service.service.jobs import status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status(runtime, job_id)
        if state["status"] not in ("queued", "running"):
            return state
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish in {timeout:g} s")


def job_items(folder: Path, limit: int | None = None) -> list:
    from ai_service.service.jobs.archive import image_item

    return [image_item(path.relative_to(folder).as_posix(), path.read_bytes()) for path in files_of(folder)[:limit]]


def run_celery(home: Path, folders: dict[str, Path], concurrency: int, broker: str, log: Path) -> dict[str, dict]:
    """One `ai-service worker --concurrency N`, warmed up, then one job per dataset, timed submit → succeeded."""
    from ai_service.observability.logging import setup_logging
    from ai_service.service.jobs import submit
    from ai_service.service.runtime import build_runtime
    from ai_service.service.upload import Caller
    from ai_service.settings import load_settings

    env = {**cli_env(home), "AI_SERVICE_BROKER_URL": broker}
    settings = load_settings({"home": str(home), "broker_url": broker, "log_level": "WARNING", "log_to_file": False})
    setup_logging(settings)
    runtime = build_runtime(settings)
    with log.open("a") as sink:
        worker = subprocess.Popen(
            [PY, "-m", "ai_service.cli", "worker", "--concurrency", str(concurrency)], env=env, stdout=sink, stderr=sink
        )
    caller = Caller("api", "bench-jobs", "bench")
    results = {}
    try:
        warm = job_items(folders["digits"], concurrency * settings.jobs.chunk_size)
        state = wait_job(runtime, submit(runtime, MODEL, warm, {}, caller, "warm-up")["id"], timeout=600)
        if state["status"] != "succeeded":
            raise RuntimeError(f"warm-up job {state['status']}: {state.get('error')}; see {log}")
        for name, folder in folders.items():
            items = job_items(folder)
            started = time.perf_counter()
            job = submit(runtime, MODEL, items, {}, caller, f"bench {name}")
            state = wait_job(runtime, job["id"])
            seconds = time.perf_counter() - started
            if state["status"] != "succeeded" or state["done"] != len(items):
                raise RuntimeError(f"celery job {name}: {state}; see {log}")
            results[name] = {"images": len(items), "seconds": seconds}
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: finishes nothing new, exits
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        runtime.close()
    return results


def celery_problem(broker: str) -> str | None:
    """Why the Celery contenders cannot run here (no worker module, broker unreachable), or None."""
    try:
        import ai_service.worker.main  # noqa: F401
        from ai_service.service.jobs import submit  # noqa: F401
    except ImportError as error:
        return f"the Celery worker is not available ({error})"
    import redis

    try:
        redis.Redis.from_url(broker, socket_connect_timeout=2).ping()
    except Exception as error:  # noqa: BLE001 - any failure means: no broker
        return f"broker {broker} unreachable ({error})"
    return None


# ---- report --------------------------------------------------------------------------------------


def rate(point: dict | None, startup: float = 0.0) -> str:
    if not point:
        return "-"
    seconds = point["seconds"] - startup
    return f"{point['images'] / seconds:.1f} ({point['seconds']:.1f} s)" if seconds > 0 else "-"


def render(results: dict[str, dict[str, dict]], startup: dict[int, float], meta: dict, counts: dict, note: str) -> str:
    header = " | ".join(f"{counts[name]:,} {DATASETS[name]}" for name in counts)
    lines = [
        "# Bulk jobs benchmark",
        "",
        f"Generated by `make bench-jobs` (bench/jobs.py) on {meta['date']}. Machine: {meta['cpu']}, "
        f"{meta['cores']} cores, {meta['memory_gb']} GiB; Python {meta['python']}, torch {meta['torch']}. "
        f"Device: {meta['gpu']}.",
        "",
        "resnet18 weights are random (seed 0): **timing only**. images/s (wall seconds in brackets); every "
        "contender over the same files, one after the other, on this machine.",
        "",
        f"| contender | {header} |",
        "|---|" + "---|" * len(counts),
    ]
    for contender, points in results.items():
        lines.append(f"| {contender} | " + " | ".join(rate(points.get(name)) for name in counts) + " |")
        workers = points.get("_workers")
        if workers in startup:
            cells = " | ".join(rate(points.get(name), startup[workers]) for name in counts)
            lines.append(f"| {contender}, after start-up ({startup[workers]:.1f} s) | {cells} |")
    lines += [
        "",
        "- plain loop: one process, model loaded first (not timed), then per image: open, RGB, resize to 224, "
        "normalize, forward (batch 1), torch's default threads.",
        "- CLI pool: `ai-service predict FOLDER -r --model resnet18-demo --workers N -o results.jsonl` timed as a "
        "whole (start, model loads, results file, history rows); start-up = the same command on 16 small digits "
        "(one batch per worker).",
        "- Celery: `ai-service worker --concurrency N` (prefork, one model copy per process), Redis broker, "
        "warmed before the clock; timed from submit (inputs stored in the database) until the job succeeded; "
        "default chunk size.",
    ]
    if note:
        lines += ["", f"Not measured: {note}."]
    return "\n".join(lines) + "\n"


def write_results(text: str) -> None:
    kept = ""
    if RESULTS.exists() and ANALYSIS_MARKER in RESULTS.read_text():
        kept = RESULTS.read_text().split(ANALYSIS_MARKER, 1)[1]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n" + ANALYSIS_MARKER + (kept or "\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts to prove the script works; writes nothing")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13", help="Redis for the Celery contenders")
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery contenders")
    parser.add_argument("--plain-loop", nargs=2, metavar=("HOME", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        plain_loop(Path(args.plain_loop[0]), Path(args.plain_loop[1]))
        return
    counts = QUICK_COUNTS if args.quick else COUNTS
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as workdir:
        work = Path(workdir)
        home = work / "home"
        prepare_home(home)
        folders = {"digits": work / "digits", "photos": work / "photos"}
        make_digits(folders["digits"], counts["digits"])
        make_photos(folders["photos"], counts["photos"])
        make_digits(work / "start-up", 8 * max(CLI_WORKERS))  # one batch per worker: start-up, little work
        results: dict[str, dict] = {"plain loop": {}}
        for name, folder in folders.items():
            results["plain loop"][name] = run_plain_loop(home, folder)
            print(f"plain loop, {name}: {rate(results['plain loop'][name])}", flush=True)
        startup = {}
        for workers in CLI_WORKERS:
            contender = f"CLI pool, --workers {workers}"
            results[contender] = {"_workers": workers}
            for name, folder in folders.items():
                results[contender][name] = run_cli(home, folder, workers, work / f"cli-{workers}-{name}.jsonl")
                print(f"{contender}, {name}: {rate(results[contender][name])}", flush=True)
            startup[workers] = run_cli(home, work / "start-up", workers, work / "start-up.jsonl")["seconds"]
        note = "Celery (--no-celery)" if args.no_celery else celery_problem(args.broker)
        if note is None:
            for concurrency in CELERY_CONCURRENCY:
                contender = f"Celery, {concurrency} worker process{'es' if concurrency > 1 else ''}"
                results[contender] = run_celery(home, folders, concurrency, args.broker, work / "worker.log")
                for name in folders:
                    print(f"{contender}, {name}: {rate(results[contender][name])}", flush=True)
        else:
            print(f"Celery not measured: {note}", file=sys.stderr)
        meta = machine({}, 0.0, "")
        text = render(results, startup, meta, counts, note or "")
    print(text)
    if not args.quick:
        write_results(text)


if __name__ == "__main__":
    main()
