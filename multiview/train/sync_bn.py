"""Batch statistics over every process: the BatchNorm of one process with the global batch (SimCLR's global BN).

``torch.nn.SyncBatchNorm`` refuses CPU tensors (torch 2.14: "SyncBatchNorm expected input tensor to be on GPU"), so
runs on CPU with gloo could not synchronise their batch statistics and N processes trained differently from one.
:class:`GlobalBatchNorm` does it on any device and backend: the per-channel sum and sample count, then the sum of
squared deviations from the global mean, are all-reduced **with autograd** (the backward all-reduces the gradients
too), so the forward and the gradients are those of one process holding the whole batch. Two small all-reduces per
BatchNorm layer and forward; outside training, in a single process, or without ``torch.distributed`` it is a plain
BatchNorm.

Examples:
    >>> from torch import nn
    >>> net = convert_global_batchnorm(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)))
    >>> type(net[1]).__name__
    'GlobalBatchNorm'
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """``y = sum over processes of x`` on every process; the gradient of each input is the sum of the gradients
    of ``y`` on every process (each process's loss depends on every process's input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over every process, differentiable."""
    return _AllReduceSum.apply(x)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over the batch of every process together (any number of dims ``[B, C, ...]``).

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm{1,2,3}d``: checkpoints load into either.
    Statistics are computed in float32 (two-pass: mean first, then squared deviations), the output keeps the
    input's dtype. ``track_running_stats`` and ``momentum=None`` (cumulative average) behave as in torch.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects [B, C, ...], got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=torch.float32)
        total = all_reduce_sum(torch.cat([xf.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = xf - mean.reshape(shape)
        var = all_reduce_sum(centred.pow(2).sum(dims)) / n  # biased: what the normalisation uses
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach().to(self.running_var.dtype), alpha=factor)
        return y.to(x.dtype)


class GlobalBatchNormAct(GlobalBatchNorm):
    """timm's ``BatchNormAct2d`` (BatchNorm, then its ``drop`` and ``act``) with global statistics; same keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``module`` (torch's ``BatchNorm{1,2,3}d``, ``SyncBatchNorm``, timm's
    ``BatchNormAct2d``) replaced by :class:`GlobalBatchNorm` holding the same parameters and buffers.
    Returns the converted module (``module`` itself unless it is a BatchNorm)."""
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        with_act = hasattr(module, "act") and hasattr(module, "drop")  # timm.layers.BatchNormAct2d
        cls = GlobalBatchNormAct if with_act else GlobalBatchNorm
        out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        if with_act:
            out.act, out.drop = module.act, module.drop
        out.train(module.training)
        if hasattr(module, "qconfig"):
            out.qconfig = module.qconfig
    for name, child in module.named_children():
        out.add_module(name, convert_global_batchnorm(child))
    return out
