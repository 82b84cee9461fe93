"""An accelerator on a CPU-only torch, to catch device-placement bugs without a GPU.

Inside `fake_accelerator()`, tensors moved or created on `ACCELERATOR` (the `meta` device) keep
real values on the CPU but report the accelerator as their device, so the code under test computes
the same numbers as on the CPU. An operation that meets such a tensor and a plain CPU tensor (other
than a 0-d scalar, which CUDA accepts too) fails as it would on a GPU: a tensor created without
`device=` and combined with the batch, a model left on the CPU, `.numpy()` without `.cpu()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

ACCELERATOR = torch.device("meta")
CPU = torch.device("cpu")


class OnAccelerator(torch.Tensor):
    """A CPU tensor (`elem`) that says it lives on `ACCELERATOR`."""

    elem: torch.Tensor
    __slots__ = ["elem"]
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> OnAccelerator:
        with torch.inference_mode(elem.is_inference()):  # as the tensor it stands for (e.g. a view of a parameter)
            out = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(),
                                                      dtype=elem.dtype, layout=elem.layout, device=ACCELERATOR,
                                                      requires_grad=elem.requires_grad)  # fmt: skip
        out.elem = elem.detach()
        return out

    def tolist(self) -> list:  # works on CUDA tensors (a copy to the host)
        return self.elem.tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func}: a tensor on the fake accelerator was used outside fake_accelerator()")


class _Mode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = next((v for v in [*args, *kwargs.values()] if isinstance(v, torch.device)), None)  # factories, moves
        args, kwargs = pytree.tree_map(_on_cpu, (args, kwargs))
        leaves = pytree.tree_leaves((args, kwargs))
        placed = any(isinstance(t, OnAccelerator) for t in leaves)
        stray = any(type(t) is torch.Tensor and t.dim() > 0 for t in leaves)
        if placed and stray and target is None and func is not torch.ops.aten.copy_.default:
            raise RuntimeError(f"{func}: Expected all tensors to be on the same device, but found at least two devices, "
                               f"{ACCELERATOR} and {CPU}!")  # fmt: skip
        out = func(*pytree.tree_map(_unwrap, args), **pytree.tree_map(_unwrap, kwargs))
        if not (target == ACCELERATOR or (placed and target is None)):
            return out
        if func._schema.name.endswith("_") and func._schema.returns:  # in place: the same (wrapped) tensor
            return args[0]
        return pytree.tree_map(lambda t: OnAccelerator(t) if isinstance(t, torch.Tensor) else t, out)


def _on_cpu(value: object) -> object:
    return CPU if isinstance(value, torch.device) and value == ACCELERATOR else value


def _unwrap(value: object) -> object:
    return value.elem if isinstance(value, OnAccelerator) else value


@contextmanager
def fake_accelerator() -> Iterator[torch.device]:
    """Yields the device to move models and batches to."""
    with _Mode():
        yield ACCELERATOR
