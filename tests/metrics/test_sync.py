"""Every dense metric synchronised across two real DDP processes (gloo) equals one process over all the data."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.metrics import (
    make_depth,
    make_normals,
    make_segmentation,
)
from umadapt.metrics import (
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        metrics = {"depth": DepthMetrics(), "normals": NormalMetrics(), "seg": SegmentationMetrics(5)}
        makers = {"depth": make_depth, "normals": make_normals, "seg": make_segmentation}
        for name, metric in metrics.items():
            for seed in range(rank, 4, world_size):
                metric.update(*makers[name](seed))
        results = {name: {k: v.item() for k, v in m.compute().items()} for name, m in metrics.items()}
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()  # tear down together (see tests/nn/test_gradient_reversal.py)
    finally:
        dist.destroy_process_group()


def test_ddp_sync_matches_single_process(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    out_file = str(tmp_path / "out.pt")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    synced = torch.load(out_file)
    for name, metric, maker in (
        ("depth", DepthMetrics(), make_depth),
        ("normals", NormalMetrics(), make_normals),
        ("seg", SegmentationMetrics(5), make_segmentation),
    ):
        for seed in range(4):
            metric.update(*maker(seed))
        for key, value in metric.compute().items():
            assert synced[name][key] == pytest.approx(value.item(), rel=1e-6), (name, key)
