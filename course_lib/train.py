"""The training loop of the book: one ``fit`` call for every model it trains.

Every chapter trains something (a classifier, a CLIP model, a denoiser) and all of
them share this loop, written once, so that a notebook shows only the part that
differs between tasks, the loss::

    def loss_fn(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    result = train.fit(model, loss_fn, (images, labels), steps=500, batch_size=64)
    result.losses      # one float per optimizer step

What the loop adds around ``loss.backward(); optimizer.step()``, and why:

* a progress bar with the running loss, so that a long cell shows it is alive;
* mixed precision on CUDA (bf16 where the GPU supports it, else fp16 with a gradient
  scaler against underflow): roughly twice the speed for the same result. It is off on
  the CPU, where it gains nothing;
* an optional exponential moving average (EMA) of the weights, which diffusion models
  sample from (see :class:`EMA`);
* checkpoints written atomically, so that a crash or a full disk never destroys the
  last good one, and resumption that reproduces the uninterrupted run exactly (bit for
  bit on CPU). That is why a checkpoint holds more than the weights: the optimizer,
  EMA and scaler state, the loss history, the batch sampler's generator, and the global
  Python, NumPy and PyTorch random states, from which loss functions such as the
  diffusion loss draw their noise.

Batches are drawn by the loop itself from a ``torch.Generator`` seeded with ``seed``
rather than by a ``DataLoader``: the batch sequence is then a pure function of the seed
and the step, which makes exact resumption possible, and indexing in-memory tensors is
the fastest way to feed the small data sets of the book.
"""

from __future__ import annotations

import copy
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate
from tqdm.auto import tqdm

from . import runtime

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes


class EMA:
    """Exponential moving average of a model's weights: θ_ema ← d·θ_ema + (1 − d)·θ.

    Noisy gradients make the weights wander around a good solution; their running
    average sits nearer its centre, and samples drawn from the averaged weights of a
    diffusion model are clearly better (Ho et al. 2020 use d = 0.9999). The average
    remembers roughly the last 1/(1 − d) steps, so d must suit the length of training.

    ``ema.model`` is a frozen copy of the model, in eval mode, holding θ_ema; use it
    like the model itself. Buffers (e.g. batch-norm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        _check_decay(decay)
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        d = self.decay
        for avg, p in zip(self.model.parameters(), model.parameters(), strict=True):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(p.detach(), alpha=1.0 - d)
            else:
                avg.copy_(p)
        for avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(b)

    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averaged ones."""
        model.load_state_dict(self.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.model.load_state_dict(state["model"])


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    ``losses[k]`` is the loss of optimizer step ``k + 1``, over the whole run, including
    the steps a resumed checkpoint had already done (``start_step`` of them).
    """

    losses: list[float] = field(repr=False)
    steps: int
    ema_model: nn.Module | None = field(default=None, repr=False)
    seconds: float = 0.0
    start_step: int = 0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan

    def __repr__(self) -> str:
        return (
            f"TrainResult(steps={self.steps}, final_loss={self.final_loss:.4g}, "
            f"seconds={self.seconds:.1f}, start_step={self.start_step}, ema={self.ema_model is not None})"
        )


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically, and return the path.

    The bytes go to a temporary file in the same directory, are flushed to disk
    (fsync), and only then renamed over ``path`` (``os.replace`` is atomic). A crash
    at any moment therefore leaves either the old checkpoint or the new one, never
    a half-written file that would lose the whole run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; directories cannot be opened on Windows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, which refuses to run code hidden in the file."""
    return torch.load(path, map_location=map_location, weights_only=True)


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    data: Dataset | torch.Tensor | tuple[torch.Tensor, ...],
    *,
    steps: int,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    batch_size: int | None = None,
    ema_decay: float | None = None,
    grad_clip: float | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int = 10,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps on ``loss_fn(model, batch)``; return the losses.

    Each step draws ``batch_size`` distinct examples at random from ``data`` (the whole
    data set, in order, when ``batch_size`` is None), calls ``loss_fn(model, batch)``,
    which must return a scalar tensor, and takes one optimizer step. ``data`` is a
    tensor (the batch is a tensor), a tuple of tensors with equal first dimensions (the
    batch is a tuple), or a map-style ``Dataset`` (batches are collated as a
    ``DataLoader`` would). The model and the batches are moved to ``device``
    (default: :func:`course_lib.runtime.device`).

    Arguments worth knowing:

    * ``optimizer``: any optimizer over the model's parameters; by default Adam with
      learning rate ``lr`` (1e-3). Give one or the other, not both.
    * ``ema_decay``: keep an :class:`EMA` of the weights, returned as ``ema_model``.
    * ``grad_clip``: rescale the gradient to at most this norm before each step.
    * ``amp``: mixed precision on CUDA (bf16, or fp16 with a gradient scaler); no effect on CPU.
    * ``seed``: seeds the batch order and, for a fresh run, Python's, NumPy's and
      PyTorch's global generators, so the same call gives the same result.
    * ``checkpoint_path``: save everything needed to resume there every
      ``checkpoint_every`` steps and at the end. With ``resume`` (the default) a run
      whose checkpoint exists continues from it, up to ``steps`` in total, and
      reproduces the run that was never interrupted; a finished one returns at once.
    * ``log_every``: how often the loss is read back from the device for the progress
      bar and checked to be finite (reading it every step would stall a GPU).

    Raises ``ValueError``/``TypeError`` naming the argument for bad arguments, and
    naming the step when ``loss_fn`` returns a non-scalar (``ValueError``) or a
    non-finite (``FloatingPointError``) loss.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model, batch), got {type(loss_fn).__name__}")
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1, allow_none=True)
    _check_int("checkpoint_every", checkpoint_every, 1, allow_none=True)
    _check_int("log_every", log_every, 1)
    _check_int("seed", seed, 0)
    if ema_decay is not None:
        _check_decay(ema_decay, "ema_decay")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be a positive gradient norm or None, got {grad_clip!r}")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be a positive learning rate, got {lr!r}")
    if optimizer is not None and lr is not None:
        raise ValueError("give either lr (for the default Adam) or optimizer (which has its own lr), not both")
    if checkpoint_every is not None and checkpoint_path is None:
        raise ValueError("checkpoint_every needs a checkpoint_path to write to")

    device = torch.device(device) if device is not None else runtime.device()
    model.to(device)
    n, take = _batch_source(data, device)
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the data set ({n} examples)")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 if lr is None else lr)
    else:
        own = {id(p) for p in model.parameters()}
        if any(id(p) not in own for g in optimizer.param_groups for p in g["params"]):
            raise ValueError("optimizer holds parameters that are not the model's; build it from model.parameters()")

    use_amp = bool(amp) and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    generator = torch.Generator()
    settings = {"seed": seed, "batch_size": batch_size, "ema_decay": ema_decay, "grad_clip": grad_clip}

    losses: list[float] = []
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        losses = _restore(load_checkpoint(path), path, settings, model, optimizer, ema, scaler, generator)
    else:
        runtime.seed_everything(seed)
        generator.manual_seed(seed)
    start = len(losses)

    def save(step: int) -> None:
        save_checkpoint({
            "format": CHECKPOINT_FORMAT, "step": step, "settings": settings,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "scaler": scaler.state_dict(),
            "losses": list(losses), "batch_generator": generator.get_state(), "rng": _rng_state(),
        }, path)

    pending: list[torch.Tensor] = []  # losses not yet read back from the device

    def flush() -> None:
        first = len(losses) + 1
        values = torch.stack(pending).float().tolist() if pending else []
        pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss_fn returned a non-finite loss ({value}) at step {first + i}; "
                    "try a smaller lr, grad_clip, or check the data for nan/inf"
                )
        losses.extend(values)

    was_training = model.training
    model.train()
    bar = tqdm(total=steps, initial=min(start, steps), disable=not progress, desc="training", unit="step")
    if start and progress:
        bar.write(f"resumed from {path} at step {start}")
    t0 = time.perf_counter()
    try:
        for step in range(start + 1, steps + 1):
            idx = None if batch_size is None else torch.randperm(n, generator=generator)[:batch_size]
            batch = take(idx)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = loss_fn(model, batch)
            _check_loss(loss, step)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model)
            pending.append(loss.detach())
            bar.update(1)
            checkpoint_due = path is not None and (step == steps or (checkpoint_every and step % checkpoint_every == 0))
            if step % log_every == 0 or step == steps or checkpoint_due:
                flush()
                bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if checkpoint_due:
                save(step)
    finally:
        bar.close()
        model.train(was_training)
    return TrainResult(
        losses=losses, steps=len(losses), ema_model=ema.model if ema is not None else None,
        seconds=time.perf_counter() - t0, start_step=start,
    )


# --- helpers -------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_decay(decay: Any, name: str = "decay") -> None:
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise ValueError(f"{name} must be a number in [0, 1) such as 0.999, got {decay!r}")


def _check_loss(loss: Any, step: int) -> None:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a scalar tensor, but at step {step} it returned {type(loss).__name__}")
    if loss.ndim != 0:
        raise ValueError(
            f"loss_fn must return a scalar tensor, but at step {step} it returned shape "
            f"{tuple(loss.shape)} (did you forget .mean()?)"
        )
    if not loss.requires_grad:
        raise ValueError(
            f"the loss at step {step} does not depend on any trainable parameter "
            "(was it computed under torch.no_grad() or from detached tensors?)"
        )


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_source(data: Any, device: torch.device) -> tuple[int, Callable[[torch.Tensor | None], Any]]:
    """The data set's size, and a function from example indices (None: all) to a batch on ``device``."""
    single = isinstance(data, torch.Tensor)
    if isinstance(data, TensorDataset):
        data = data.tensors
    if single or (isinstance(data, tuple) and data and all(isinstance(t, torch.Tensor) for t in data)):
        tensors = (data,) if single else data
        sizes = {t.shape[0] if t.ndim else None for t in tensors}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                f"data tensors must share their first (example) dimension, got sizes {sorted(map(str, sizes))}"
            )
        n = sizes.pop()
        tensors = tuple(t.to(device) for t in tensors)  # small in-memory data: move once, index on device

        def take(idx: torch.Tensor | None) -> Any:
            out = tensors if idx is None else tuple(t[idx.to(device)] for t in tensors)
            return out[0] if single else out
    elif isinstance(data, Dataset) and hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)

        def take(idx: torch.Tensor | None) -> Any:
            indices = range(n) if idx is None else idx.tolist()
            return _to_device(default_collate([data[i] for i in indices]), device)
    else:
        raise TypeError(
            "data must be a tensor, a tuple of tensors, or a map-style torch Dataset "
            f"(with __len__ and __getitem__), got {type(data).__name__}"
        )
    if n == 0:
        raise ValueError("data is empty: there is nothing to train on")
    return n, take


def _rng_state() -> dict[str, Any]:
    """The global generators' states as tensors and plain types, loadable with weights_only=True."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _restore(ckpt, path, settings, model, optimizer, ema, scaler, generator) -> list[float]:
    """Load a checkpoint written by :func:`fit` into the training objects; return the loss history."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by course_lib.train.fit (format {CHECKPOINT_FORMAT})")
    changed = {k: (ckpt["settings"].get(k), v) for k, v in settings.items() if ckpt["settings"].get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        warnings.warn(f"resuming {path} with different settings ({detail}); the run will not "
                      "reproduce an uninterrupted one", stacklevel=3)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ema is not None:
        if ckpt["ema"] is None:
            raise ValueError(
                f"ema_decay was given but {path} was trained without an EMA; pass resume=False to start over"
            )
        ema.load_state_dict(ckpt["ema"])
        ema.decay = float(settings["ema_decay"])
    if ckpt["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(ckpt["scaler"])
    generator.set_state(ckpt["batch_generator"])
    _set_rng_state(ckpt["rng"])
    return [float(x) for x in ckpt["losses"]]
