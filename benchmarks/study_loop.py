"""The study's own training loop, as the benchmarks' baseline.

A per-sample ``Dataset`` (``MNIST.__getitem__``), a ``DataLoader`` with batch 64 and shuffling,
fp32, Adam (lr 1e-3), cross-entropy and the running loss read with ``loss.item()`` every batch.
The study names "a learning-rate scheduler" without saying which; StepLR (x0.1 every 10 of its 30
epochs) stands in for it.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import mnist_zoo
from mnist_zoo.training import seed_everything

BATCH_SIZE = 64


class StudyLoop:
    """Model, loader, optimizer and scheduler of the study, trained batch by batch."""

    def __init__(self, name: str, train: Dataset, seed: int = 0) -> None:
        seed_everything(seed)
        self.model = mnist_zoo.create_model(name)
        self.loader = DataLoader(train, batch_size=BATCH_SIZE, shuffle=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=10, gamma=0.1)
        self.criterion = nn.CrossEntropyLoss()

    def train(self, max_batches: int | None = None, warmup: int = 0) -> tuple[int, float]:
        """One epoch (or ``warmup + max_batches`` batches); returns (images, seconds) timed
        after the first ``warmup`` batches."""
        self.model.train()
        seen, start = 0, time.perf_counter()
        running = 0.0
        for i, (x, y) in enumerate(self.loader):
            if i == warmup:
                seen, start = 0, time.perf_counter()
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            running += loss.item()
            seen += len(y)
            if max_batches is not None and i + 1 >= warmup + max_batches:
                break
        else:
            self.scheduler.step()
        return seen, time.perf_counter() - start
