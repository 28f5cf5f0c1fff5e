"""Micro A/B of what the history writer costs request threads, in seconds instead of the serving bench's minutes.

Each pass starts `--procs` fresh processes (like gunicorn's workers) with `--threads` threads each (gthread) and the
server workers' GIL switch interval; every thread loops over a GIL-holding stand-in for a digits request (PNG
decode, numpy, building and dumping a response: about `--work-ms` ms on one core) and then records it through the
real History.record, whose RowWriter writes to a SQLite file (WAL) in a temporary home, as `make run` does.
Modes: off (no history), on (the defaults), record (rows built on the request thread, then thrown away instead of
queued), prepare (queued and prepared by the writer, never written), q1 (a queue of one row: nearly every row
dropped at submit, counted and logged). Modes take turns inside each pass; the report gives each mode's median
req/s, its cost against off, CPU ms per request (the steadiest figure on a busy machine), GC time per request and
the writer thread's own CPU per row. --heap adds long-lived objects (a server's torch and flask) for the GC to
walk; --forward-ms hands each request to an engine-like thread that sleeps (a GIL-free forward) per batch.

    python bench/history_micro.py --passes 5 --seconds 4
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The result of one digits image as predict() hands it to History.record (after locate()).
RESULT: dict[str, Any] = {
    "predictions": [
        {"label": "7", "index": 7, "score": 0.981234},
        {"label": "1", "index": 1, "score": 0.012345},
        {"label": "9", "index": 9, "score": 0.003456},
    ],
    "index": 0,
    "filename": "digit.png",
    "width": 64,
    "height": 64,
    "mode": "L",
    "geometry": {
        "original_size": [64, 64],
        "model_size": [8, 8],
        "scale": [0.125, 0.125],
        "offset": [0.0, 0.0],
        "exif_orientation": 1,
        "exif_rotated": False,
    },
}
TIMING = {"decode": 0.21, "preprocess": 0.12, "queue": 1.8, "forward": 0.4, "postprocess": 0.05, "total": 3.1}


def digit_png() -> bytes:
    """A 64x64 grey PNG with some structure, like the bench's digit.png."""
    import numpy as np
    from PIL import Image

    pixels = (np.add.outer(np.arange(64), np.arange(64)) * 7 % 251).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_work(work_ms: float, loops: int = 0) -> Any:
    """A request stand-in: decode + numpy preprocess + pure-Python response building, `work_ms` ms on one core
    (or `loops` inner loops, as the parent calibrated); returns (work, png bytes, loops)."""
    import numpy as np
    from PIL import Image

    data = digit_png()

    def once(loops: int) -> dict[str, Any]:
        image = Image.open(io.BytesIO(data))
        array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        small = array.reshape(8, 8, 8, 8).mean(axis=(1, 3))
        body: dict[str, Any] = {"model": "digits", "results": [], "timing_ms": dict(TIMING)}
        for index in range(loops):  # headers, routing, validation, logging: dicts and strings
            body["results"].append({"index": index, "label": str(index % 10), "score": float(small[index % 8, 0])})
        body["text"] = json.dumps(body)
        return body

    if loops:
        return lambda: once(loops), data, loops
    loops = 50  # calibrate so that one call takes work_ms of CPU (thread time: other load does not skew it)
    while True:
        started = time.thread_time()
        for _ in range(20):
            once(loops)
        took = (time.thread_time() - started) / 20 * 1000
        if took >= work_ms * 0.9 or loops > 200_000:
            break
        loops = int(loops * min(4.0, max(1.1, work_ms / max(took, 1e-3))))
    return lambda: once(loops), data, loops


def thread_cpu_s(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine(forward_ms: float) -> Any:
    """An inference thread like the engine's: request threads hand it their image and wait; it takes what is
    waiting (a batch) and runs a `forward_ms` GIL-free 'forward' (a sleep), then wakes them."""
    import queue

    waiting: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()

    def run() -> None:
        while True:
            batch = [waiting.get()]
            while len(batch) < 8:
                try:
                    batch.append(waiting.get_nowait())
                except queue.Empty:
                    break
            time.sleep(forward_ms / 1000)
            for done in batch:
                done.set()

    threading.Thread(target=run, daemon=True).start()

    def handoff() -> None:
        done = threading.Event()
        waiting.put(done)
        done.wait()

    return handoff


def child(args: argparse.Namespace) -> None:
    """One worker process: threads loop until the end of the window; prints its counts as JSON."""
    sys.setswitchinterval(args.switch_interval)
    from ai_service.service.history.recorder import open_history
    from ai_service.service.upload import Caller, Upload
    from ai_service.settings import load_settings

    overrides: dict[str, Any] = {"home": args.home, "history": args.mode != "off", "log_to_file": False}
    if args.mode == "q1":
        overrides["history_queue_size"] = 1
    for item in args.set or []:
        key, value = item.split("=", 1)
        overrides[key] = value
    settings = load_settings(overrides)
    history = open_history(settings)
    if history is not None and args.mode == "record":  # rows built on the request thread, then thrown away
        history.writer.submit = len  # type: ignore[method-assign]
    if history is not None and args.mode == "prepare":  # the writer prepares rows but writes nothing
        history.writer._write = lambda rows: True  # type: ignore[method-assign]
    work, data, _ = make_work(args.work_ms, args.loops)
    heap = [{"key": index, "items": [index]} for index in range(args.heap // 2)]  # a server's long-lived objects
    import gc

    gc.collect()
    gc_time = [0.0, 0.0, 0, 0]  # seconds in collections, start of the current one, gen2 collections, collections
    window = [float("inf")]  # when the measured window starts

    def gc_clock(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        elif time.time() >= window[0]:
            gc_time[0] += time.perf_counter() - gc_time[1]
            gc_time[2] += info["generation"] == 2
            gc_time[3] += 1

    gc.callbacks.append(gc_clock)
    print("ready", flush=True)  # the parent starts the window once every child has imported and opened
    start_at = window[0] = float(sys.stdin.readline())
    stop_at = start_at + args.seconds
    counts = [0] * args.threads
    handoff = engine(args.forward_ms) if args.forward_ms > 0 else None

    def serve(slot: int) -> None:
        caller = Caller(source="api", request_id=f"req-{slot}", client="ip:127.0.0.1")
        while (now := time.time()) < stop_at:
            work()
            if handoff is not None:
                handoff()
            if history is not None:
                history.record(
                    caller, ("digits", "1", "classification"), [Upload(data, "digit.png")], [dict(RESULT)], TIMING, 1
                )
            if now >= start_at:
                counts[slot] += 1

    threads = [threading.Thread(target=serve, args=(slot,), daemon=True) for slot in range(args.threads)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    writer_before = written_before = 0.0
    writer = history.writer if history is not None else None
    if writer is not None and writer._thread is not None:
        writer_before, written_before = thread_cpu_s(writer._thread.native_id), writer.written
    for thread in threads:
        thread.join()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    writer_cpu = rows = 0.0
    if writer is not None and writer._thread is not None:
        writer_cpu, rows = thread_cpu_s(writer._thread.native_id) - writer_before, writer.written - written_before
    result = {"requests": sum(counts), "writer_cpu_s": writer_cpu, "rows": rows}
    result["user_s"] = cpu_after.ru_utime - cpu_before.ru_utime
    result["sys_s"] = cpu_after.ru_stime - cpu_before.ru_stime
    result["cpu_s"] = result["user_s"] + result["sys_s"]
    result["csw"] = (cpu_after.ru_nvcsw + cpu_after.ru_nivcsw) - (cpu_before.ru_nvcsw + cpu_before.ru_nivcsw)
    result["heap"] = len(heap)
    result["gc_s"], result["gc2"], result["gcs"] = gc_time[0], gc_time[2], gc_time[3]
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # no shutdown flush: only the measured window counts


def run_pass(args: argparse.Namespace, mode: str, home: str) -> dict[str, float]:
    """`procs` children of one mode at once; totals over them."""
    command = [sys.executable, __file__, "--child", "--mode", mode, "--home", home]
    for name in ("threads", "seconds", "work_ms", "switch_interval", "warmup", "loops", "forward_ms", "heap"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for item in args.set or []:
        command += ["--set", item]
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(args.procs)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start_at = time.time() + args.warmup
    results = [json.loads(proc.communicate(f"{start_at}\n")[0].strip().splitlines()[-1]) for proc in procs]
    total = {key: sum(result[key] for result in results) for key in results[0]}
    return {
        "rps": total["requests"] / args.seconds,
        "cpu_ms": 1000 * total["cpu_s"] / max(total["requests"], 1),
        "sys_ms": 1000 * total["sys_s"] / max(total["requests"], 1),
        "csw": total["csw"] / max(total["requests"], 1),
        "gc_us": 1e6 * total["gc_s"] / max(total["requests"], 1),
        "gc2": total["gc2"],
        "gcs": total["gcs"],
        "writer_us_row": 1e6 * total["writer_cpu_s"] / total["rows"] if total["rows"] else 0.0,
        "rows": total["rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per pass and mode")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--procs", type=int, default=2, help="worker processes (the bench: 2, one per core)")
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--work-ms", type=float, default=1.2)
    parser.add_argument("--heap", type=int, default=600_000, help="long-lived GC-tracked objects (torch, flask)")
    parser.add_argument("--forward-ms", type=float, default=0.0, help="GIL-free engine step per batch (0: none)")
    parser.add_argument("--switch-interval", type=float, default=0.0005, help="as server/process.py sets")
    parser.add_argument("--modes", default="off,on,record,prepare", help="off, on, q1, record, prepare")
    parser.add_argument("--loops", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", help="extra setting for every mode, e.g. history_flush_ms=200")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="on", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.loops = make_work(args.work_ms)[2]
    modes = args.modes.split(",")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for number in range(args.passes):
        order = modes if number % 2 == 0 else modes[::-1]
        for mode in order:
            with tempfile.TemporaryDirectory(prefix="history-micro-") as home:
                result = run_pass(args, mode, home)
            runs[mode].append(result)
            print(
                f"pass {number + 1} {mode:>4}: {result['rps']:7.1f} req/s  {result['cpu_ms']:.3f} CPU ms/req "
                f"(sys {result['sys_ms']:.3f}) gc {result['gc_us']:.0f} us/req ({result['gcs']:.0f}, "
                f"full {result['gc2']:.0f})  "
                f"writer {result['writer_us_row']:.0f} us/row over {result['rows']:.0f} rows",
                flush=True,
            )
    base = statistics.median(run["rps"] for run in runs[modes[0]])
    print(f"\nmedians over {args.passes} passes ({args.procs} procs x {args.threads} threads, work {args.work_ms} ms):")
    for mode in modes:
        rps = statistics.median(run["rps"] for run in runs[mode])
        cpu = statistics.median(run["cpu_ms"] for run in runs[mode])
        writer = statistics.median(run["writer_us_row"] for run in runs[mode])
        sys_ms = statistics.median(run["sys_ms"] for run in runs[mode])
        gc_us = statistics.median(run["gc_us"] for run in runs[mode])
        print(
            f"  {mode:>4}: {rps:7.1f} req/s ({100 * (base - rps) / base:+5.1f}% cost vs {modes[0]})  "
            f"{cpu:.3f} CPU ms/req (sys {sys_ms:.3f}, gc {gc_us:.0f} us)  writer {writer:.0f} us/row"
        )


if __name__ == "__main__":
    main()
