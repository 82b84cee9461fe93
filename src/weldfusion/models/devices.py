"""Which device computes, and how: `--accelerator` resolved to a torch device, the autocast of the
frozen encoders, loader workers and pinned memory for a device, and moving batches onto it."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from weldfusion.errors import InputError


def resolve_device(accelerator: str = "auto", devices: int = 1) -> torch.device:
    """`auto` (CUDA when available), `cpu` or `gpu`; a GPU that is not there is an InputError."""
    if devices < 1:
        raise InputError(f"--devices {devices}: must be >= 1")
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if accelerator not in ("auto", "gpu"):
        raise InputError(f"--accelerator {accelerator}: use auto, cpu or gpu")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise InputError(f"--accelerator gpu: no CUDA GPU is available (torch {torch.__version__}); "
                         "use --accelerator cpu or auto")  # fmt: skip
    if devices > available:
        raise InputError(f"--devices {devices}: only {available} CUDA GPU(s) available")
    return torch.device("cuda")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision for frozen encoders: bf16 on the CPU; on CUDA bf16 where the GPU supports it,
    else fp16; none on devices without autocast."""
    if not enabled or not torch.amp.is_autocast_available(device.type):
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def loader_workers(configured: int, device: torch.device) -> int:
    """The configured loader workers; feeding a GPU, at least this process's share of the cores
    (decoding is what keeps a GPU waiting)."""
    if device.type != "cuda":
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(configured, cores // max(torch.cuda.device_count(), 1) - 1)


def pin_memory(device: torch.device) -> bool:
    return device.type == "cuda"


def to_device(data: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts/lists/tuples moved to `device` (other values as they are)."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=True)
    if isinstance(data, dict):
        return {k: to_device(v, device) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(v, device) for v in data)
    return data


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
