"""Process-wide switches are set by configure_process() (post_fork, app.py, the CLI), never by creating an app."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from werkzeug import formparser
from werkzeug.sansio.multipart import MultipartDecoder

from ai_service import create_app
from ai_service.http.multipart import LiteralBoundaryDecoder
from ai_service.server.process import GIL_SWITCH_INTERVAL_S, configure_process
from ai_service.settings import load_settings


@pytest.fixture
def bare_process(monkeypatch):
    """The process as Python starts it: default switch interval, werkzeug's decoder, one torch thread, no GPU list."""
    interval, threads = sys.getswitchinterval(), torch.get_num_threads()
    sys.setswitchinterval(0.005)
    torch.set_num_threads(1)
    monkeypatch.setattr(formparser, "MultipartDecoder", MultipartDecoder)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # recorded, so that what configure_process sets is undone
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    yield
    sys.setswitchinterval(interval)
    torch.set_num_threads(threads)


def test_creating_an_app_leaves_the_process_alone(bare_process, home):
    create_app({"TESTING": True, "home": str(home), "gpus": "0", "torch_threads": 2})
    assert sys.getswitchinterval() == 0.005
    assert formparser.MultipartDecoder is MultipartDecoder
    assert torch.get_num_threads() == 1
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_configure_process_sets_every_switch(bare_process):
    assert configure_process(load_settings({"gpus": "0", "torch_threads": 2})) == 2
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
    assert formparser.MultipartDecoder is LiteralBoundaryDecoder
    assert torch.get_num_threads() == 2
    if not torch.cuda.is_initialized():  # once CUDA runs in this process the list cannot change (a warning says so)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    configure_process(load_settings({"gpus": "0", "torch_threads": 2}))  # idempotent
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
