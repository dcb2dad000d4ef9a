"""A small CNN trained on scikit-learn's real digits data (offline), shared by the engine tests.

Trained once per test session (~1 s on one core) with a fixed seed."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class DigitsCNN(nn.Module):
    """A plain nn.Module (not an l2ul model): the engine must work on any classifier taking [0, 1] images."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.b2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = (x - 0.5) / 0.5
        x = F.relu(self.b1(self.c1(x)))
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        return self.fc(x.flatten(1))


@functools.lru_cache(maxsize=1)
def digits_setup():
    """(model, x_train, y_train, x_test, y_test): images float [N, 1, 8, 8] in [0, 1]."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=360, random_state=0, stratify=y)
    torch.manual_seed(0)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):   # 4 epochs: 98.7% train / 98.1% test; a less over-confident model than 15 epochs
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(net(xtr[b]), ytr[b]).backward()
            opt.step()
    net.eval()
    return net, xtr, ytr, xte, yte


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def forget_split(n_train: int, k: int, seed: int = 0):
    """k random training indices and the boolean mask of the remaining ones."""
    ids = np.random.default_rng(seed).choice(n_train, k, replace=False)
    mask = torch.ones(n_train, dtype=torch.bool)
    mask[torch.as_tensor(ids)] = False
    return torch.as_tensor(ids), mask
