"""What a training run prints: a tqdm bar per epoch, or one plain line per epoch, or nothing."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

__all__ = ["PROGRESS_MODES", "EpochBar", "Reporter"]

#: What ``progress=`` accepts.
PROGRESS_MODES = (True, False, "auto", "plain")


class EpochBar:
    """A tqdm bar over one epoch's batches, with running loss, accuracy and images/s.

    Args:
        bar: The tqdm bar, or ``None`` to show nothing (then every method does nothing).
        total: Batches in the epoch.
        world_size: Processes training, to report the images/s of all of them.
    """

    def __init__(self, bar: Any, total: int, world_size: int) -> None:
        self.bar = bar
        self.total = total
        self.world_size = world_size
        self.start = time.perf_counter()

    def update(self, step: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> None:
        """Refresh the bar every 20 batches and at the last one.

        Args:
            step: The 0-based batch just done.
            loss_sum: Summed training loss so far (on the device).
            correct: Correct predictions so far (on the device).
            seen: Images so far on this process.
        """
        # Reading the sums synchronises with the device, so only when the bar is shown.
        if self.bar is None or not (step % 20 == 0 or step + 1 == self.total):
            return
        elapsed = time.perf_counter() - self.start
        self.bar.set_postfix(
            loss=f"{float(loss_sum) / seen:.4f}",
            acc=f"{100 * int(correct) / seen:.2f}%",
            img_s=f"{seen * self.world_size / max(elapsed, 1e-9):.0f}",
            refresh=False,
        )
        self.bar.update(step + 1 - self.bar.n)

    def close(self) -> None:
        """Remove the bar (the epoch's plain line replaces it)."""
        if self.bar is not None:
            self.bar.close()


class Reporter:
    """Prints a run's progress from the main process only.

    Args:
        progress: One of :data:`PROGRESS_MODES` (the Trainer checks it): ``True`` for a tqdm
            bar per epoch, ``"plain"`` for one line per epoch, ``False`` for nothing,
            ``"auto"`` for a bar on a terminal and plain lines otherwise.
        epochs: The run's number of epochs, for "epoch 3/10".
        main_process: Whether this process prints (rank 0).
    """

    def __init__(self, progress: bool | str, *, epochs: int, main_process: bool) -> None:
        self.progress = progress
        self.epochs = epochs
        self.main_process = main_process

    def _use_bar(self) -> bool:
        if not self.main_process:
            return False
        if self.progress == "auto":
            return sys.stderr.isatty()
        return self.progress is True

    def epoch_bar(self, epoch: int, total: int, world_size: int) -> EpochBar:
        """A bar for one epoch (one that shows nothing when bars are off).

        Args:
            epoch: The 0-based epoch.
            total: Batches in it.
            world_size: Processes training.

        Returns:
            The bar; its clock starts now.
        """
        bar = None
        if self._use_bar():
            from tqdm.auto import tqdm

            bar = tqdm(
                total=total,
                desc=f"epoch {epoch + 1}/{self.epochs}",
                unit="batch",
                leave=False,
                dynamic_ncols=True,
            )
        return EpochBar(bar, total, world_size)

    def log(self, line: str) -> None:
        """Print ``line`` unless progress output is off or this is not the main process.

        Args:
            line: The line to print.
        """
        if self.main_process and self.progress is not False:
            print(line, flush=True)

    def log_epoch(self, m: dict[str, float]) -> None:
        """Print an epoch's metrics on one line.

        Args:
            m: The epoch's row of the history.
        """
        line = (
            f"epoch {int(m['epoch'])}/{self.epochs}  train_loss {m['train_loss']:.4f}  "
            f"train_acc {100 * m['train_acc']:.2f}%"
        )
        if "val_loss" in m:
            line += f"  val_loss {m['val_loss']:.4f}  val_acc {100 * m['val_acc']:.2f}%"
        line += f"  lr {m['lr']:.2e}  {m['images_per_s']:.0f} img/s  {m['epoch_time_s']:.1f}s"
        self.log(line)
