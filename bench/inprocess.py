"""What one digits request costs inside the process, for ai_service and for the plain Flask app.

The serving benchmark measures whole servers, and on a shared 2-core VM its CPU per request moves by tens of
percent within an hour. Called directly as WSGI apps, without sockets or threads, the two apps show what their
own Python costs. Each request gets a fresh multipart boundary and a new input (so no result cache answers it),
as bench/loadgen.py sends them.

    .venv/bin/python bench/inprocess.py                 # CPU ms and Python calls per request, both apps
    .venv/bin/python bench/inprocess.py --profile 40    # plus ai_service's 40 costliest functions (cProfile)

CPU per request is the best of several windows: interference only ever adds time, so the minimum is the
steadiest figure. Python calls per request do not depend on the machine at all.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "bench" / "baselines")]

from loadgen import INPUT_TAIL, PLACEHOLDER, multipart_body  # noqa: E402 - bench/ is not a package

WsgiApp = Callable[[dict, Callable], object]


def ai_service_app(home: Path) -> WsgiApp:
    """The app as a gunicorn worker of `make run` builds it: process tuning, logging to file, digits loaded."""
    os.environ.update(AI_SERVICE_HOME=str(home), AI_SERVICE_PRELOAD="digits")
    from ai_service import create_app
    from ai_service.observability.logging import setup_logging
    from ai_service.server.process import configure_process
    from ai_service.settings import load_settings

    settings = load_settings()
    setup_logging(settings)
    configure_process(settings)
    return create_app()


def plain_app(home: Path) -> WsgiApp:
    """bench/baselines/naive_flask.py with one torch thread, as the serving benchmark's plain servers run it."""
    os.environ.update(BENCH_RESNET_WEIGHTS=str(home / "models" / "resnet18.pt"), BENCH_TORCH_THREADS="1")
    import naive_flask

    return naive_flask.app


def request_environ(path: str, body: bytes, content_type: str) -> dict:
    """One POST of loadgen's multipart body (built once, see `requester`) with a new boundary and a new input tail,
    as bench/loadgen.py sends it."""
    boundary = os.urandom(16).hex().encode()
    body = body.replace(PLACEHOLDER, boundary).replace(INPUT_TAIL, os.urandom(16).hex().encode())
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "CONTENT_TYPE": content_type.replace(PLACEHOLDER.decode(), boundary.decode()),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def requester(app: WsgiApp, path: str, image: Path) -> Callable[[], None]:
    """A function that sends one request through `app` and reads the whole answer; fails on anything but 200."""
    status: list[str] = []
    body, content_type = multipart_body(image, {"model": "digits"}, PLACEHOLDER.decode(), INPUT_TAIL)

    def start_response(line: str, headers: list, exc_info: object = None) -> None:
        status.append(line)

    def one() -> None:
        answer = app(request_environ(path, body, content_type), start_response)
        b"".join(answer)
        getattr(answer, "close", lambda: None)()
        if not status[-1].startswith("200"):
            raise SystemExit(f"{path} answered {status[-1]}")

    return one


def cpu_ms(one: Callable[[], None], requests: int, windows: int) -> float:
    """Best CPU milliseconds per request over `windows` windows of `requests` requests."""
    best = float("inf")
    for _ in range(windows):
        started = time.process_time()
        for _ in range(requests):
            one()
        best = min(best, (time.process_time() - started) / requests * 1000.0)
    return best


def python_calls(one: Callable[[], None], requests: int = 100) -> tuple[float, pstats.Stats]:
    """Python function calls per request, counted by cProfile, and the profile itself."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        one()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    return stats.total_calls / requests, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per window (default %(default)s)")
    parser.add_argument("--windows", type=int, default=15, help="windows; the best one counts (default %(default)s)")
    parser.add_argument("--profile", type=int, metavar="N", help="also print ai_service's N costliest functions")
    args = parser.parse_args()
    from serving import prepare_home

    home = Path(tempfile.mkdtemp(prefix="bench-inprocess-"))
    prepare_home(home)
    image = home / "digit.png"
    console = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # ai_service's console copy of every access line, still written
    try:
        rows = measure(home, image, args)
    finally:
        from ai_service.observability.logging import flush_logs

        flush_logs()  # the access lines still on their way to the console go to /dev/null too
        os.dup2(console, 2)
    print("| app | CPU ms per request (best window) | Python calls per request |")
    print("|---|---|---|")
    for name, milliseconds, calls in rows:
        print(f"| {name} | {milliseconds:.3f} | {calls:.0f} |")


def measure(home: Path, image: Path, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """(app, CPU ms per request, Python calls per request) for ai_service, then the plain app."""
    # The plain app goes first, on werkzeug as installed: ai_service's process set-up (configure_process) swaps
    # werkzeug's multipart parser process-wide, which measured after it the plain app would use too.
    apps = {"plain": (plain_app, "/predict"), "ai_service": (ai_service_app, "/api/v1/predict")}
    rows = []
    for name, (build, path) in apps.items():
        one = requester(build(home), path, image)
        for _ in range(50):  # warm-up: first-call set-up, caches, the forward's measured estimate
            one()
        calls, stats = python_calls(one)
        rows.append((name, cpu_ms(one, args.requests, args.windows), calls))
        if args.profile and name == "ai_service":
            stats.sort_stats("cumulative").print_stats(args.profile)
    return rows[::-1]


if __name__ == "__main__":
    main()
