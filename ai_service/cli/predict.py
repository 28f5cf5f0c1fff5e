"""`ai-service predict PATH...`: every image under the paths through a model, locally or on a server.

Locally a pool of spawned worker processes (one model copy each, the cores split between them) runs batches of the
engine's batch size; with --server the batches go to POST /api/v1/predict over a few connections. Results are written
in input order as they arrive; Ctrl-C finishes the batches in progress, keeps what is done and exits 130.
"""

from __future__ import annotations

import argparse
import getpass
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from ai_service.cli.inputs import InputError, Item, batches, collect
from ai_service.cli.local import BatchOutcome, WorkerConfig, close_worker, init_worker, run_batch
from ai_service.cli.records import RecordWriter, make_record, output_format, read_records, retryable

#: Images per request to a server: its default max_files (a smaller limit is found by splitting).
SERVER_BATCH = 16
#: Most worker processes when --workers is not given (each holds a model copy).
AUTO_WORKERS = 4


@dataclass
class Tally:
    """What the run did, for the summary and the exit status."""

    done: int = 0
    failed: int = 0
    fatal: dict[str, Any] | None = None
    interrupted: bool = False


def add_predict_command(commands: Any) -> None:
    """The predict command's options: inputs, where results go, how it runs, and /predict's own options."""
    predict = commands.add_parser(
        "predict",
        help="run a model on image files and folders (a local worker pool, or a server with --server)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders with --recursive")
    predict.add_argument("--model", help="model name or name@version (default: the default model)")
    predict.add_argument("-r", "--recursive", action="store_true", help="predict every file under folder PATHs")
    predict.add_argument(
        "-o",
        "--out",
        help="results file: .jsonl, .csv or .parquet (- for JSON lines on standard output; "
        "default: one JSON document on standard output at the end)",
    )
    predict.add_argument("--outputs", metavar="DIR", help="write image outputs here, named after each input's path")
    predict.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs already in --out (failures not caused by the input, like timeouts, run again)",
    )
    predict.add_argument(
        "--workers",
        type=int,
        default=0,
        help="local worker processes, one model copy each "
        f"(default: one per core up to {AUTO_WORKERS}, on CUDA too and at least one per GPU in AI_SERVICE_GPUS, which "
        "they take round robin)",
    )
    predict.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help=f"images per predict call (default: the engine's batch size locally, {SERVER_BATCH} with --server)",
    )
    predict.add_argument("--server", metavar="URL", help="send the images to a running server instead")
    predict.add_argument("--api-key", help="API key for --server (default: $AI_SERVICE_API_KEY)")
    predict.add_argument("--connections", type=int, default=4, help="concurrent requests to --server (default 4)")
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--top-k", dest="top_k", type=int, help="predictions per image (classification)")
    predict.add_argument("--fit", choices=("stretch", "letterbox", "crop"), help="how images are fitted to the model")
    predict.add_argument("--resample", choices=("nearest", "bilinear", "bicubic", "lanczos", "area", "box"))
    predict.add_argument("--score-threshold", dest="score_threshold", type=float, help="detection: lowest score")
    predict.add_argument("--background", help="color transparent pixels are flattened onto (CSS name or #rrggbb)")
    predict.add_argument("--output-format", dest="output_format", choices=("png", "webp", "jpeg"))
    predict.add_argument("--quality", type=int, help="JPEG/WebP quality of image outputs")
    predict.add_argument(
        "--no-cache",
        dest="cache",
        action="store_const",
        const="off",
        help="run the model for every image, even one the result cache has answered before",
    )
    predict.add_argument("--home", help="AI_SERVICE_HOME (default: the settings)")
    predict.set_defaults(handler=predict_command)


def request_options(args: argparse.Namespace) -> dict[str, Any]:
    """/predict's per-request options given on the command line, validated as the API validates them."""
    from ai_service.schemas import PredictOptions

    names = ("top_k", "fit", "resample", "score_threshold", "background", "output_format", "quality", "cache")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    PredictOptions.model_validate({"model": args.model, **given})  # raises pydantic's ValidationError
    return given


def predict_command(args: argparse.Namespace) -> int:
    """Check the arguments, skip what --resume finds done, run the rest, summarize."""
    from pydantic import ValidationError

    try:
        fmt = output_format(args.out) if args.out else "jsonl"
        options = request_options(args)
        items = collect(args.paths, args.recursive)
        if args.resume and (not args.out or args.out == "-"):
            raise InputError("--resume needs --out FILE (the results of the earlier run)")
    except ValidationError as error:
        problem = error.errors()[0]
        option = ".".join(map(str, problem["loc"])).replace("_", "-")
        print(f"ai-service predict: --{option}: {problem['msg']}", file=sys.stderr)
        return 2
    except (InputError, ValueError) as error:
        print(f"ai-service predict: {error}", file=sys.stderr)
        return 2
    writer = RecordWriter(args.out, fmt)
    todo = items
    if args.resume:
        writer.kept = [record for record in read_records(Path(args.out), fmt) if not retryable(record)]
        finished = {record["path"] for record in writer.kept}
        todo = [item for item in items if item.path not in finished]
    writer.open(rewrite=args.resume)
    started = time.perf_counter()
    try:
        tally = run(args, options, todo, writer) if todo else Tally()
    except KeyboardInterrupt:  # before the workers started: nothing ran
        tally = Tally(interrupted=True)
    writer.close()
    return summarize(args, tally, writer, len(items) - len(todo), time.perf_counter() - started)


def run(args: argparse.Namespace, options: dict[str, Any], todo: list[Item], writer: RecordWriter) -> Tally:
    """Keep a window of batches in flight and write their records in input order as they finish."""
    from tqdm import tqdm

    executor, submit, size, workers = start_executor(args, options, len(todo))
    groups = iter(batches(todo, size))
    window: deque[tuple[list[Item], Future[BatchOutcome]]] = deque(
        (group, submit(group)) for group in islice(groups, 2 * workers)
    )
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(todo), unit="img", file=sys.stderr, disable=args.quiet, mininterval=0.2 if tty else 10)
    tally = Tally()
    hard_stop = False
    try:
        while window and tally.fatal is None:
            group, future = window[0]
            keep(tally, writer, bar, group, outcome_of(future), args.model)
            window.popleft()
            following = next(groups, None)
            if following is not None and tally.fatal is None:
                window.append((following, submit(following)))
    except KeyboardInterrupt:
        tally.interrupted = True
        bar.write("ai-service predict: stopping after the batches in progress (Ctrl-C again stops at once)")
        try:
            for _, future in window:
                future.cancel()
            for group, future in window:
                if not future.cancelled():
                    keep(tally, writer, bar, group, outcome_of(future), args.model)
        except KeyboardInterrupt:
            hard_stop = True
            for child in multiprocessing.active_children():
                child.terminate()
    finally:
        for _, future in window:
            future.cancel()
        executor.shutdown(wait=not hard_stop, cancel_futures=True)
        if isinstance(executor, ThreadPoolExecutor) and not args.server:
            close_worker()
        bar.close()
    return tally


def outcome_of(future: Future[BatchOutcome]) -> BatchOutcome:
    """The batch's outcome; a worker that died (killed, out of memory) ends the run with its reason."""
    try:
        return future.result()
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - BrokenProcessPool and the like: reported, then the run stops
        return BatchOutcome(fatal={"code": "internal_error", "message": f"a worker failed: {error!r}"})


def keep(tally: Tally, writer: RecordWriter, bar: Any, group: list[Item], outcome: BatchOutcome, model: Any) -> None:
    """Record one finished batch (or the error that ends the run)."""
    if outcome.fatal is not None:
        tally.fatal = tally.fatal or outcome.fatal
        return
    records = [make_record(item.path, outcome.model or model or "", e) for item, e in zip(group, outcome.entries)]
    writer.add(records)
    failed = sum(record["status"] != "ok" for record in records)
    tally.done += len(records) - failed
    tally.failed += failed
    bar.update(len(records))


def start_executor(
    args: argparse.Namespace, options: dict[str, Any], count: int
) -> tuple[Executor, Callable[[list[Item]], Future[BatchOutcome]], int, int]:
    """The executor for this run, how to submit a batch to it, the batch size and how many run at once."""
    if args.server:
        from ai_service.cli.remote import RemoteRunner

        api_key = args.api_key or os.environ.get("AI_SERVICE_API_KEY") or None
        runner = RemoteRunner(args.server, api_key, args.model, options, args.outputs)
        connections = max(1, args.connections)
        threads = ThreadPoolExecutor(connections, thread_name_prefix="predict-remote")
        return (
            threads,
            lambda group: threads.submit(runner.run_batch, group),
            args.batch_size or SERVER_BATCH,
            connections,
        )
    from ai_service.cli.common import load_cli_settings
    from ai_service.observability.logging import new_request_id

    quiet = {} if "AI_SERVICE_LOG_LEVEL" in os.environ else {"log_level": "WARNING"}
    settings = load_cli_settings(args.home, quiet)
    size, workers, overrides = plan(args, settings, count)
    config = WorkerConfig(
        args.home,
        args.model,
        options,
        args.outputs,
        {**quiet, **overrides},
        new_request_id(),
        f"cli:{getpass.getuser()}",
        in_process=workers == 1,
        gpus=settings.compute.gpus,
    )
    if workers == 1:
        thread = ThreadPoolExecutor(1, thread_name_prefix="predict", initializer=init_worker, initargs=(config,))
        return thread, lambda group: thread.submit(run_batch, group), size, 1
    from ai_service.server.cores import shared_slots

    context = multiprocessing.get_context("spawn")
    placement = (shared_slots(workers), context.Value("i", 0))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(config, *placement))
    return pool, lambda group: pool.submit(run_batch, group), size, workers


def plan(args: argparse.Namespace, settings: Any, count: int) -> tuple[int, int, dict[str, Any]]:
    """Batch size, worker processes and their settings: torch threads split so workers × threads ≤ cores."""
    import torch

    from ai_service.engine.engine import DEFAULT_BATCH_SIZE
    from ai_service.server.cores import available_cores

    device = settings.compute.device
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    size = args.batch_size or settings.engine.max_batch_size or DEFAULT_BATCH_SIZE["cuda" if on_gpu else "cpu"]
    cores = available_cores()
    listed = [gpu for gpu in settings.compute.gpus.split(",") if gpu.strip()]
    # On a GPU too: one process decodes on one core, far slower than the GPU runs a forward (serving-gpu.md).
    wanted = args.workers or max(len(listed) if on_gpu else 1, min(cores, AUTO_WORKERS))
    workers = max(1, min(wanted, -(-count // size)))
    overrides: dict[str, Any] = {
        # No client waits on a CLI batch: a slow one on a busy machine must not time out, nor overflow the queue.
        "request_timeout_s": max(settings.engine.request_timeout_s, 3600.0),
        "max_queue": max(settings.engine.max_queue, size),
    }
    if workers > 1:
        overrides["workers"] = workers
        overrides["torch_threads"] = settings.engine.torch_threads or max(1, cores // workers)
    return size, workers, overrides


def summarize(args: argparse.Namespace, tally: Tally, writer: RecordWriter, skipped: int, elapsed: float) -> int:
    """The summary on stderr (and the results on stdout without --out); 130, 1 or 0 as the run went."""
    if args.out is None:
        print(json.dumps(legacy_document(writer.records), indent=2, default=str))
    ran = tally.done + tally.failed
    parts = [f"{tally.done} done", f"{tally.failed} failed"]
    if skipped:
        parts.append(f"{skipped} skipped (already in {args.out})")
    rate = ran / elapsed if elapsed > 0 else 0.0
    print(f"ai-service predict: {', '.join(parts)}; {rate:.1f} images/s, {elapsed:.1f} s", file=sys.stderr)
    for record in [record for record in writer.records if record["status"] != "ok"][:5]:
        print(f"  failed: {record['path']}: {record['error_code']}: {record['error_message']}", file=sys.stderr)
    if tally.fatal is not None and not tally.interrupted:  # after Ctrl-C a worker may die of it too: not news
        print(f"ai-service predict: {tally.fatal.get('code')}: {tally.fatal.get('message')}", file=sys.stderr)
        return 1
    if tally.interrupted:
        where = f"; run again with --resume --out {args.out} to continue" if args.out and args.out != "-" else ""
        print(f"ai-service predict: interrupted, {ran} results kept{where}", file=sys.stderr)
        return 130
    failed_before = any(record["status"] != "ok" for record in writer.kept)
    return 1 if tally.failed or failed_before else 0


def legacy_document(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Without --out: one JSON document shaped like /predict's answer (what `ai-service predict` always printed)."""
    model = next((record["model"] for record in records if record["model"]), "")
    name, _, version = model.partition("@")
    return {"model": name, "version": version, "results": [record["result"] for record in records]}
