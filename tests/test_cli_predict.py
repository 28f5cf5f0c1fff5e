"""`ai-service predict PATH...` as a person runs it: real CLI subprocesses over folders of digit PNGs, locally (a pool
of spawned workers) and against a live server; output formats read back with pandas, Ctrl-C, --resume, --outputs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from live_server import serve
from PIL import Image

from ai_service import create_app
from ai_service.cli.inputs import natural_key
from ai_service.models.builtin.digits_training import render_digit

ROOT = Path(__file__).resolve().parents[1]
COUNT = 60


def predict(*args: str, home: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m ai_service.cli predict ...` in `cwd`, its settings from `home`."""
    environment = {**os.environ, "AI_SERVICE_HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "ai_service.cli", "predict", *args, "-q"]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=180)


def read(path: Path) -> pd.DataFrame:
    """A results file by its extension, labels kept as text."""
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype={"top1_label": str}, precise_float=True)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"top1_label": str})
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, digits_split) -> tuple[Path, Path, dict[str, str]]:
    """digits/ with 60 PNGs (a third in digits/more/), the home, and each file's true label by its path."""
    root = tmp_path_factory.mktemp("predict")
    labels = {}
    for index in range(COUNT):
        folder = root / "digits" / ("more" if index % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"digit{index}.png"
        render_digit(digits_split.test_images[index], 64).save(path)
        labels[path.relative_to(root).as_posix()] = str(digits_split.test_labels[index])
    return root, root / "home", labels


@pytest.fixture(scope="module")
def pool_run(workdir) -> pd.DataFrame:
    """The folder through a pool of two worker processes, as JSON lines."""
    root, home, _ = workdir
    done = predict(
        "digits", "--recursive", "--workers", "2", "--model", "digits", "-o", "out.jsonl", home=home, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert f"{COUNT} done, 0 failed" in done.stderr and "images/s" in done.stderr
    return read(root / "out.jsonl")


def test_a_pool_of_two_labels_a_folder_in_input_order_in_every_format(workdir, pool_run):
    root, home, labels = workdir
    expected = sorted(labels, key=natural_key)
    assert expected[:2] == ["digits/digit1.png", "digits/digit2.png"]  # digit10 comes after digit2
    assert list(pool_run["path"]) == expected
    assert (pool_run["status"] == "ok").all() and (pool_run["model"] == "digits@1.0").all()
    correct = sum(label == labels[path] for path, label in zip(pool_run["path"], pool_run["top1_label"]))
    assert correct / COUNT >= 0.9, correct
    first = pool_run["result"][0]
    assert first["predictions"][0]["label"] == pool_run["top1_label"][0] and first["index"] == 0
    assert first["filename"] == "digits/digit1.png" and pool_run["history_id"].notna().all()
    with closing(sqlite3.connect(home / "var" / "ai_service.db")) as database:  # the workers flushed their rows
        ids = list(pool_run["history_id"])
        marks = ",".join("?" * len(ids))
        rows = database.execute(
            f"SELECT source, filename, item_index FROM predictions WHERE id IN ({marks})", ids
        ).fetchall()
    assert sorted(rows) == sorted(("cli", path, index) for index, path in enumerate(expected))  # run-wide numbers
    for fmt in ("csv", "parquet"):
        done = predict("digits", "-r", "--workers", "1", "--model", "digits", "-o", f"out.{fmt}", home=home, cwd=root)
        assert done.returncode == 0, done.stderr
        frame = read(root / f"out.{fmt}")
        assert list(frame.columns) == list(pool_run.columns)
        assert list(frame["path"]) == expected and list(frame["top1_label"]) == list(pool_run["top1_label"])
        assert json.loads(frame["result"][0])["predictions"] == first["predictions"]


def test_a_non_image_is_a_failed_item_and_the_exit_status_says_so(workdir, tmp_path):
    root, home, _ = workdir
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.png").write_bytes((root / "digits" / "digit1.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "b.png").write_bytes(b"")
    done = predict(str(folder), "-r", "--workers", "1", "-o", "mixed.csv", home=home, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "1 done, 2 failed" in done.stderr and "notes.txt: unsupported_format" in done.stderr
    frame = read(tmp_path / "mixed.csv")
    assert list(frame["status"]) == ["ok", "error", "error"]
    assert list(frame["error_code"].fillna("")) == ["", "empty_file", "unsupported_format"]
    folder_without_recursive = predict(str(folder), home=home, cwd=tmp_path)
    assert folder_without_recursive.returncode == 2 and "--recursive" in folder_without_recursive.stderr
    assert predict("missing.png", home=home, cwd=tmp_path).returncode == 2
    unknown = predict(str(folder), "-r", "--model", "no-such-model", "-o", "unknown.jsonl", home=home, cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown_model" in unknown.stderr
    assert not (tmp_path / "unknown.jsonl").exists()


def test_resume_skips_inputs_already_in_the_results_and_retries_transient_failures(workdir, tmp_path):
    root, home, _ = workdir
    folder = tmp_path / "batch"
    folder.mkdir()
    sample = (root / "digits" / "digit1.png").read_bytes()
    for index in range(3):
        (folder / f"{index}.png").write_bytes(sample)
    out = tmp_path / "results.jsonl"
    assert predict("batch", "-r", "--workers", "1", "-o", str(out), home=home, cwd=tmp_path).returncode == 0
    before = out.read_text().splitlines()
    for index in range(3, 5):
        (folder / f"{index}.png").write_bytes(sample)
    timeout = {"path": "batch/3.png", "status": "error", "error_code": "timeout", "error_message": "slow", "result": {}}
    with out.open("a") as stream:
        stream.write(json.dumps(timeout) + "\n" + '{"path": "batch/4.png", "sta')  # and a line torn by a crash
    done = predict("batch", "-r", "--workers", "1", "-o", str(out), "--resume", home=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 done, 0 failed, 3 skipped" in done.stderr
    lines = out.read_text().splitlines()
    assert lines[:3] == before  # kept as they were (same history ids)
    assert [json.loads(line)["path"] for line in lines] == [f"batch/{index}.png" for index in range(5)]
    assert all(json.loads(line)["status"] == "ok" for line in lines)


def test_ctrl_c_stops_cleanly_keeps_what_is_done_and_resume_finishes(workdir, tmp_path):
    root, home, _ = workdir
    folder = tmp_path / "many"
    folder.mkdir()
    sample = (root / "digits" / "digit1.png").read_bytes()
    for index in range(400):
        (folder / f"{index}.png").write_bytes(sample)
    out = tmp_path / "many.jsonl"
    environment = {**os.environ, "AI_SERVICE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "ai_service.cli", "predict", "many", "-r", "--workers", "2", "--batch-size", "1"]
    process = subprocess.Popen(
        [*command, "-o", str(out), "-q"],
        cwd=tmp_path,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a child inherits an ignored SIGINT, and some code earlier in a full test
        # run leaves this process ignoring it (then the CLI never sees the signal and runs to the end).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert 0 < len(paths) < 400
    assert paths == [f"many/{index}.png" for index in range(len(paths))]  # a prefix, in input order
    done = predict("many", "-r", "--workers", "1", "-o", str(out), "--resume", home=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    finished = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert finished == [f"many/{index}.png" for index in range(400)]


def test_against_a_live_server_the_labels_are_the_same(workdir, pool_run):
    root, home, _ = workdir
    app = create_app({"home": str(home), "api_keys": "cli-test-key"})
    try:
        with serve(app) as url:
            env = {"AI_SERVICE_API_KEY": "cli-test-key"}
            args = ("digits", "-r", "--server", url, "--model", "digits", "--batch-size", "7", "-o", "server.jsonl")
            done = predict(*args, home=home, cwd=root, env=env)
            refused = predict(*args, home=home, cwd=root, env={"AI_SERVICE_API_KEY": "wrong"})
    finally:
        app.extensions["ai_service"].close()
    assert done.returncode == 0, done.stderr
    remote = read(root / "server.jsonl")
    assert list(remote["path"]) == list(pool_run["path"])
    assert list(remote["top1_label"]) == list(pool_run["top1_label"])
    assert refused.returncode == 1 and "invalid_api_key" in refused.stderr
    assert len(read(root / "server.jsonl")) == COUNT  # the refused run left the earlier results alone


def test_outputs_of_an_image_model_are_written_after_their_inputs(workdir, tmp_path):
    _, home, _ = workdir
    for name in ("photos/a.png", "photos/trip/b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 12), (200, 30, 30)).save(tmp_path / name)
    done = predict(
        "photos", "photos/a.png", "photos/a.png", "-r", "--workers", "1", "--model", "upscale-2x", "--outputs", "up",
        "-o", "up.jsonl", home=home, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = read(tmp_path / "up.jsonl")
    assert list(records["output"]) == ["up/photos/a.png", "up/photos/trip/b.png", "up/a.png", "up/a-2.png"]
    for output in records["output"]:
        with Image.open(tmp_path / output) as image:
            assert image.size == (40, 24)
    assert records["result"][0]["image"] == "up/photos/a.png"  # not a data URL: the file is the output
    assert [result["filename"] for result in records["result"]][2:] == ["a.png", "a.png"]  # as the history has it


def test_the_worker_command_hands_its_arguments_to_the_celery_worker(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "AI_SERVICE_BROKER_URL"}
    environment |= {"PYTHONPATH": str(ROOT), "AI_SERVICE_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "ai_service.cli", "worker"]
    helped = subprocess.run([*command, "--help"], env=environment, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--concurrency" in helped.stdout, helped.stderr
    refused = subprocess.run([*command, "-c", "2"], env=environment, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "AI_SERVICE_BROKER_URL" in refused.stderr


def test_no_cache_runs_the_model_for_a_repeated_image(workdir, tmp_path):
    root, home, _ = workdir
    folder = tmp_path / "twice"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes((root / "digits" / "digit1.png").read_bytes())

    def cached(*flags: str) -> list:
        done = predict(
            str(folder), "-r", "--workers", "1", "--batch-size", "1", "-o", "out.jsonl", *flags, home=home, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        return [result.get("cached", False) for result in read(tmp_path / "out.jsonl")["result"]]

    assert cached() == [False, True]  # the same bytes again: answered from the result cache
    assert cached("--no-cache") == [False, False]


def test_local_workers_default_to_one_per_core_up_to_four_on_a_gpu_too():
    """One process decodes on one core, far slower than a GPU forward: a GPU box gets the CPU box's pool."""
    import argparse

    from ai_service.cli.predict import AUTO_WORKERS, plan
    from ai_service.server.cores import available_cores
    from ai_service.settings import load_settings

    args = argparse.Namespace(workers=0, batch_size=0)
    expected = min(available_cores(), AUTO_WORKERS)
    for device, gpus, least in (("cpu", "", 1), ("cuda", "", 1), ("cuda", "0,1,2,3,4,5", 6)):
        settings = load_settings({"device": device, "gpus": gpus, "log_to_file": False})
        _, workers, _ = plan(args, settings, count=10_000)
        assert workers == max(least, expected), (device, gpus)
    assert plan(argparse.Namespace(workers=3, batch_size=0), settings, count=10_000)[1] == 3
