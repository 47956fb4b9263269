"""GlobalBatchNorm: 2 processes (gloo on CPU) with half a batch each == one BatchNorm over the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from multiview.train.sync_bn import GlobalBatchNorm, GlobalBatchNormAct, convert_global_batchnorm


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    net(torch.zeros(2, 3, 6, 6))
    return nn.Sequential(net, nn.BatchNorm1d(5, momentum=None))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(12, 3, 6, 6, generator=g) * 3 + 1, torch.randn(12, 5, generator=g)


def _reference():
    net = _net()
    x, target = _data()
    x.requires_grad_(True)
    for _ in range(2):  # two steps: running stats (momentum and cumulative) move twice
        net.zero_grad()
        out = net(x)
        (out - target).pow(2).sum().div(12).backward()
    return out.detach(), x.grad, {n: p.grad for n, p in net.named_parameters()}, net.state_dict()


def _worker(rank: int, world: int, init: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        net = convert_global_batchnorm(_net())
        x, target = (t.chunk(world)[rank] for t in _data())
        x.requires_grad_(True)
        for _ in range(2):
            net.zero_grad()
            out = net(x)
            (out - target).pow(2).sum().div(12).backward()  # summed over processes: the full-batch loss
            for p in net.parameters():  # DDP's gradient all-reduce (sum here: the loss is a sum over processes)
                dist.all_reduce(p.grad)
        grads = {n: p.grad for n, p in net.named_parameters()}
        torch.save((rank, out.detach(), x.grad, grads, net.state_dict()), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_processes_normalise_and_differentiate_as_one_batch(tmp_path):
    ctx = mp.get_context("spawn")
    init = f"file://{tmp_path / 'store'}"
    procs = [ctx.Process(target=_worker, args=(rank, 2, init, str(tmp_path))) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    out, x_grad, grads, state = _reference()
    torch.testing.assert_close(torch.cat([r[1] for r in results]), out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([r[2] for r in results]), x_grad, rtol=1e-4, atol=1e-6)
    for _, _, _, got_grads, got_state in results:
        for name, want in grads.items():
            torch.testing.assert_close(got_grads[name], want, rtol=1e-4, atol=1e-6, msg=name)
        assert got_state.keys() == state.keys()  # checkpoints load into plain BatchNorm and back
        for name, want in state.items():
            torch.testing.assert_close(got_state[name], want, rtol=1e-4, atol=1e-6, msg=name)


def test_conversion_keeps_parameters_buffers_and_plain_behaviour_in_one_process():
    import timm.layers

    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), timm.layers.BatchNormAct2d(3, act_layer=nn.ReLU))
    keys = net.state_dict().keys()
    weight = net[1].weight
    converted = convert_global_batchnorm(net)
    assert type(converted[1]) is GlobalBatchNorm and type(converted[2]) is GlobalBatchNormAct
    assert converted[1].weight is weight and converted.state_dict().keys() == keys
    plain = nn.BatchNorm1d(6)
    x = torch.randn(8, 6)
    torch.testing.assert_close(GlobalBatchNorm(6)(x), plain(x))  # no process group: a plain BatchNorm
    y = converted[2](torch.randn(4, 3, 2, 2))
    assert (y >= 0).all()  # BatchNormAct2d keeps its activation
