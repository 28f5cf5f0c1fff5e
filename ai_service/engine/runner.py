"""One forward for a list of samples, done the fast way for the model's device.

CPU: BatchNorm folded into convolutions, channels_last for conv nets, the core budget's share of
intra-op threads, optional bf16 autocast.
CUDA: samples stacked into pinned memory and copied with non_blocking, cudnn.benchmark, optional
autocast (bf16/fp16). Either: optional torch.compile for power-of-two batch buckets, each warmed up once
per input shape; a batch between buckets is padded on CUDA (idle lanes are free there) and cut into
bucket-sized pieces on the CPU (padded rows would cost their full compute), where inductor also freezes
the weights (constant folding, prepacked convolutions).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
from loguru import logger

from ai_service.engine.batcher import sample_key
from ai_service.models import precision
from ai_service.models.base import ImageModel
from ai_service.models.pytree import split_batch, tree_map
from ai_service.server.cores import budget
from ai_service.settings import EngineSettings

AMP_DTYPES = precision.DTYPES
#: A forward predicted to take less than this on one core runs on one core: splitting it gains at most a
#: few ms, and an OpenMP team that waits on a descheduled thread can lose far more (tiny nets like digits).
SMALL_FORWARD_MS = 4.0


def has_convolutions(network: torch.nn.Module) -> bool:
    """channels_last only pays off for networks with 2-D convolutions."""
    return any(isinstance(module, torch.nn.Conv2d) for module in network.modules())


def fuse_batchnorm(network: torch.nn.Module) -> torch.nn.Module | None:
    """A copy with every BatchNorm folded into the convolution before it (~10% faster resnet18 on CPU).

    None when there is nothing to fold or the network cannot be traced by torch.fx (TorchScript,
    data-dependent control flow such as detection heads): such networks simply run unfused.
    """
    if isinstance(network, torch.jit.ScriptModule) or not any(
        isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in network.modules()
    ):
        return None
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(network.eval())
    except Exception as error:  # noqa: BLE001 - tracing fails in many legitimate ways; unfused is still right
        logger.debug("not folding BatchNorm of {}: {}", type(network).__name__, error)
        return None


def bucket_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below the maximum, and the maximum: the only shapes a compiled model ever sees."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


def bucket_pieces(count: int, max_batch_size: int) -> list[int]:
    """`count` as a sum of bucket sizes, largest first (5 → 4 + 1): a CPU batch runs as these pieces."""
    sizes, pieces = bucket_sizes(max_batch_size), []
    while count > 0:
        piece = max(size for size in sizes if size <= count)
        pieces.append(piece)
        count -= piece
    return pieces


def to_host(value: Any) -> Any:
    """Outputs on the CPU in float32 (numpy has no bfloat16), keeping the container structure."""
    return tree_map(_to_host_leaf, value)


def _to_host_leaf(leaf: Any) -> Any:
    if not isinstance(leaf, torch.Tensor):
        return leaf
    leaf = leaf.detach().to("cpu")
    return leaf.float() if leaf.dtype in (torch.float16, torch.bfloat16) else leaf


class ForwardRunner:
    """Runs batches of one model; lives on that model's inference thread."""

    def __init__(
        self,
        model: ImageModel,
        settings: EngineSettings,
        max_batch_size: int,
        under_load: Callable[[], bool] = lambda: False,
    ) -> None:
        self.model = model
        self.under_load = under_load
        self.settings = settings
        self.max_batch_size = max_batch_size
        self._prepared_for: int | None = None
        self._channels_last = False
        self._forward: Callable[[torch.Tensor], Any] = model.forward
        self._compiled = False
        self._warmed: set[tuple] = set()
        self._one_core_ms_per_sample: float | None = None

    def runs_inline(self, count: int) -> bool:
        """May a forward of `count` samples run in the request's own thread? Only a measured one-core CPU
        forward: wider ones need the inference thread's single OpenMP team (a team per request thread
        would keep idle threads spinning), and CUDA/compiled models keep their one thread."""
        device = self.model.device
        estimate = self._one_core_ms_per_sample
        return (
            estimate is not None
            and estimate * count < SMALL_FORWARD_MS
            and self.settings.torch_threads <= 1
            and not self._compiled
            and (device is None or device.type == "cpu")
        )

    def __call__(self, samples: list[torch.Tensor]) -> list[Any]:
        network = self.model.network
        if network is None:
            raise RuntimeError(f"model {self.model.info.name} was unloaded while requests were queued")
        device = self.model.device or torch.device("cpu")
        self._prepare(network, device)
        count = len(samples)
        batch = self._assemble(samples, device)
        if self._compiled:
            self._warm_up(samples[0], device)  # a compilation that fails falls back to eager: _compiled turns False
        alone = count == 1 and not self.under_load()
        if self._compiled and device.type == "cpu":
            results, start = [], 0
            for piece in bucket_pieces(count, self.max_batch_size):
                outputs = self._forward_on(batch[start : start + piece], device, alone=alone)
                results.extend(split_batch(to_host(outputs), piece))
                start += piece
            return results
        if self._compiled:
            batch = self._pad(batch)
        outputs = self._forward_on(batch, device, alone=alone)
        return split_batch(to_host(outputs), count)

    def warm_up(self, sample: torch.Tensor) -> None:
        """Compile (AI_SERVICE_COMPILE) and warm every bucket for this sample's shape now, before any request: on a
        CPU inductor takes tens of seconds, longer than a request's deadline."""
        network = self.model.network
        if network is None:
            raise RuntimeError(f"model {self.model.info.name} is not loaded")
        device = self.model.device or torch.device("cpu")
        self._prepare(network, device)
        if self._compiled:
            self._warm_up(sample.to(device), device)

    def _prepare(self, network: torch.nn.Module, device: torch.device) -> None:
        """Once per loaded network: memory format, cuDNN autotuning, compilation."""
        if self._prepared_for == id(network):
            return
        if self.settings.fuse_batchnorm and (fused := fuse_batchnorm(network)) is not None:
            self.model.network = network = fused
        self._channels_last = self.settings.channels_last and has_convolutions(network)
        if self._channels_last:
            network.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._forward = self.model.forward
        self._compiled = self.settings.compile
        if self._compiled:
            self._forward = torch.compile(
                self.model.forward,
                mode=self.settings.compile_mode,
                backend=self.settings.compile_backend,
                dynamic=False,
            )
            self._warmed.clear()
        self._prepared_for = id(network)

    def _assemble(self, samples: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """Stack samples into one batch on the device (pinned + non_blocking from CPU to CUDA)."""
        if device.type == "cuda" and samples[0].device.type == "cpu":
            pinned = torch.empty((len(samples), *samples[0].shape), dtype=samples[0].dtype, pin_memory=True)
            torch.stack(samples, out=pinned)
            batch = pinned.to(device, non_blocking=True)
        else:
            batch = torch.stack(samples).to(device)
        if self._channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _pad(self, batch: torch.Tensor) -> torch.Tensor:
        """Grow the batch to the next bucket size with zeros so compiled graphs are reused."""
        size = next(bucket for bucket in bucket_sizes(self.max_batch_size) if bucket >= batch.shape[0])
        if size == batch.shape[0]:
            return batch
        padding = torch.zeros((size - batch.shape[0], *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
        padded = torch.cat([batch, padding])
        return (
            padded.contiguous(memory_format=torch.channels_last)
            if self._channels_last and padded.dim() == 4
            else padded
        )

    def _warm_up(self, sample: torch.Tensor, device: torch.device) -> None:
        """Compile every bucket for this input shape before serving it (first batch of a new shape)."""
        key = sample_key(sample)
        if key in self._warmed:
            return
        try:
            with self._compile_options(device):
                for size in bucket_sizes(self.max_batch_size):
                    zeros = torch.zeros((size, *sample.shape), dtype=sample.dtype, device=device)
                    if self._channels_last and zeros.dim() == 4:
                        zeros = zeros.contiguous(memory_format=torch.channels_last)
                    self._forward_on(zeros, device, measure=False)
        except Exception as error:  # noqa: BLE001 - a compiler failure (no C compiler, an unsupported op) must not fail requests
            logger.warning(
                "model {}: torch.compile failed, serving it eager ({}: {})",
                self.model.info.name,
                type(error).__name__,
                " ".join(str(error).split())[:600],
            )
            self._forward, self._compiled = self.model.forward, False
            # Seen on an H200 (torch 2.11): right after inductor failed, the first eager forward failed once too.
            # A warm-up absorbs that, not a user's request.
            try:
                self._forward_on(
                    torch.zeros((1, *sample.shape), dtype=sample.dtype, device=device), device, measure=False
                )
            except Exception as again:  # noqa: BLE001 - the requests that follow report any lasting failure
                logger.debug("model {}: eager warm-up after the failed compilation: {}", self.model.info.name, again)
            return
        logger.info(
            "model {}: compiled and warmed batch sizes {} for input {}",
            self.model.info.name,
            bucket_sizes(self.max_batch_size),
            tuple(sample.shape),
        )
        self._warmed.add(key)

    def _compile_options(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Inductor on the CPU compiles with frozen weights (folded constants, prepacked convolutions): 1.07× on
        resnet18 at batch 8 and 1.4× at batch 1 (2-core AMD EPYC), where an unfrozen graph gains nothing."""
        if device.type != "cpu" or self.settings.compile_backend != "inductor":
            return contextlib.nullcontext()
        import torch._inductor.config

        return torch._inductor.config.patch(freezing=True)

    def _forward_on(self, batch: torch.Tensor, device: torch.device, measure: bool = True, alone: bool = True) -> Any:
        """The forward under inference mode, autocast and (on CPU) the granted share of the cores.

        Only a lone request (one image, nothing queued or decoding behind it) may take every idle
        core; a batch means traffic, and then one worker's share gives more images per CPU second.
        """
        if device.type != "cpu":
            with torch.inference_mode(), self._autocast(device):
                return self._forward(batch)
        count = batch.shape[0]
        estimate = self._one_core_ms_per_sample
        if estimate is None or estimate * count < SMALL_FORWARD_MS:
            wanted = 1  # the first forward measures the one-core cost itself: no OpenMP team to wait on
        else:
            wanted = None if alone else budget().fair_share
        with budget().threads(self.settings.torch_threads, wanted) as granted:
            started = time.perf_counter()
            with torch.inference_mode(), self._autocast(device):
                outputs = self._forward(batch)
            one_core = (time.perf_counter() - started) * 1000.0 * granted / count
        if measure:  # a compiling warm-up says nothing about the steady state
            # Contention (other processes, a descheduled OpenMP thread) and first-call set-up only ever slow a
            # forward down: the estimate follows a faster forward at once and a slower one slowly. An average let a
            # busy moment make a tiny model look big, then take every core, spin and look bigger still (measured:
            # digits at 26 ms of CPU per request on a loaded 2-core machine, against 2.7 ms for a plain app).
            self._one_core_ms_per_sample = (
                one_core if estimate is None else min(one_core, 0.9 * estimate + 0.1 * one_core)
            )
        return outputs

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The precision the model's load-time check chose (models/precision.py); a model loaded by hand, which
        no check saw, runs in AI_SERVICE_PRECISION as it is."""
        used = self.model.precision_in_use or precision.resolve(self.settings.precision, device)
        if used not in AMP_DTYPES or device.type not in ("cpu", "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[used])
