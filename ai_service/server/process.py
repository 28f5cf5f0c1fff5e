"""Process-wide switches, set once per serving process (gunicorn worker, dev server, CLI), never per app.

Creating an app must not change the process: tests create many apps, and a library user may create one
inside a process of their own. Whoever owns the process calls `configure_process()` before the app (or
registry) is built: gunicorn.conf.py's post_fork, app.py's development server, the CLI's in-process
commands, and tests/conftest.py once per test session.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from ai_service.settings import Settings

#: Python's default GIL switch interval is 5 ms: an eager forward re-takes the GIL between ops (~60 for
#: resnet18), so while request threads run Python (parsing, decoding) each re-take could wait 5 ms and a
#: 30 ms forward took seconds. 0.5 ms fixed that, but with a dozen request threads per worker it also forced
#: a GIL hand-off every 0.5 ms, several within one digits request (~2 ms of CPU). 2 ms, measured side by side
#: against 0.5 ms (2026-11-28, 2 cores, c=16): digits 930 against 837 and 931 against 879 req/s, 7-14% less CPU
#: per request; resnet18 at c=1, 4 and 16 unchanged (47.6 against 46.6 req/s at c=16). 1 ms measured like 0.5.
GIL_SWITCH_INTERVAL_S = 0.002


def configure_process(settings: Settings, workers: int | None = None) -> int:
    """Set GPU visibility, torch threads, the GIL switch interval and the multipart parser; returns torch threads.

    `workers`: the processes sharing this machine's cores (gunicorn's count; default 1: a process of its own).
    Must run before CUDA initializes (CUDA_VISIBLE_DEVICES is read once). Idempotent.
    """
    from ai_service.devices import apply_gpu_visibility, configure_torch_threads
    from ai_service.http import multipart

    apply_gpu_visibility(settings.compute.gpus)
    threads = configure_torch_threads(settings.engine.torch_threads, workers or 1)
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
    literal_multipart = multipart.install()
    if not literal_multipart:
        logger.warning("werkzeug's multipart decoder changed shape: every upload compiles its boundary patterns")
    logger.info(
        "process configured: torch_threads={} gil_switch_interval={}s literal_multipart={}",
        threads,
        sys.getswitchinterval(),
        literal_multipart,
    )
    return threads
