"""The per-epoch metrics of a training run, and their JSON and CSV files."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

from ..atomic import atomic_write

__all__ = ["History"]


class History:
    """One row of metrics per epoch: ``history["val_acc"]`` gives a column as a list.

    Args:
        rows: The rows to start with, one dict of metrics per epoch (copied).
    """

    def __init__(self, rows: Sequence[dict[str, float]] = ()) -> None:
        self.rows: list[dict[str, float]] = [dict(r) for r in rows]

    def append(self, row: dict[str, float]) -> None:
        """Add one epoch's metrics.

        Args:
            row: The epoch's metrics (copied).
        """
        self.rows.append(dict(row))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.rows == other.rows

    def __repr__(self) -> str:
        return f"History({len(self.rows)} epochs)"

    def best(self, monitor: str = "val_acc") -> dict[str, float]:
        """The row with the best ``monitor`` value (lowest for losses, highest otherwise).

        Args:
            monitor: A metric name, e.g. "val_acc" or "val_loss".

        Returns:
            The best epoch's row.

        Raises:
            KeyError: No epoch recorded ``monitor``.
        """
        rows = [r for r in self.rows if monitor in r]
        if not rows:
            raise KeyError(f"No epoch recorded {monitor!r}.")
        pick = min if monitor.endswith("loss") else max
        return pick(rows, key=lambda r: r[monitor])

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as a JSON list, atomically.

        Args:
            path: The file to write; its folder must exist.

        Raises:
            OSError: The file cannot be written.
        """
        atomic_write(path, json.dumps(self.rows, indent=2))

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as CSV with a header, atomically.

        Args:
            path: The file to write; its folder must exist.

        Raises:
            OSError: The file cannot be written.
        """
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [",".join(keys)]
        lines += [",".join(_csv_value(r.get(k, "")) for k in keys) for r in self.rows]
        atomic_write(path, "\n".join(lines) + "\n")

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> History:
        """Read a file written by :meth:`to_csv`.

        Args:
            path: The CSV file.

        Returns:
            The history, every value as a float.

        Raises:
            OSError: The file cannot be read.
        """
        with open(path, newline="") as f:
            return cls([{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)])


def _csv_value(v: object) -> str:
    # repr keeps every digit of a float, so a history read back compares equal.
    return repr(v) if isinstance(v, float) else str(v)
