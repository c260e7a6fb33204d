"""Users' models for the bring-your-own-model tests: BatchNorm MLPs and the MLPerf Tiny
anomaly-detection autoencoder shape (TorchScript compiles from source files, so they live here)."""

from __future__ import annotations

import torch
from torch import nn


def with_running_stats(module: nn.Module, dim: int, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics (a few training-mode passes) and
    non-trivial affine parameters, then switch to eval mode."""
    gen = torch.Generator().manual_seed(seed)
    module.train()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d) and m.affine:
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
        for _ in range(5):
            module(torch.rand(64, dim, generator=gen) * 2 + 0.5)
    return module.eval()


def mlperf_tiny_ae(inputs: int = 640, hidden: int = 128, latent: int = 8) -> nn.Sequential:
    """MLPerf Tiny's anomaly-detection AE: 4 x [Linear + BatchNorm1d + ReLU], Linear(latent) +
    BN + ReLU, mirrored, Linear(inputs)."""
    def block(i, o):
        return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

    enc = block(inputs, hidden) + block(hidden, hidden) * 1 + block(hidden, hidden) + \
        block(hidden, hidden) + block(hidden, latent)
    dec = block(latent, hidden) + block(hidden, hidden) + block(hidden, hidden) + \
        block(hidden, hidden) + [nn.Linear(hidden, inputs)]
    return nn.Sequential(*enc, *dec)


class EncoderDecoder(nn.Module):
    """Nested custom modules whose forward is a plain chain, with Dropout and Identity."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(10, 6), nn.BatchNorm1d(6),
                                     nn.LeakyReLU(0.1), nn.Dropout(0.2), nn.Linear(6, 3),
                                     nn.Tanh())
        self.decoder = nn.Sequential(nn.Identity(), nn.Linear(3, 6), nn.ReLU(),
                                     nn.BatchNorm1d(6), nn.Linear(6, 10), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))
