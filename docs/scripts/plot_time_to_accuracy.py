"""Plot test accuracy against training time from the log of ``benchmarks/time_to_accuracy.py``.

    python benchmarks/time_to_accuracy.py simplecnn --max-study-epochs 15 | tee tta.log
    python docs/scripts/plot_time_to_accuracy.py tta.log docs/img/study/time_to_accuracy.png

Reads the per-epoch lines the benchmark prints (``study  NAME epoch N: test X%  (Ts)`` and
``trainer epoch N: test X%  (Ts)``) and draws one curve for the study's loop and one for the
Trainer's recipe, with the study's published accuracy as a line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LINE = re.compile(r"^\s+(study|trainer)\s+(?:\w+ )?epoch (\d+): test ([\d.]+)%\s+\((\d+)s\)")


def main(log: str, out: str) -> None:
    """Parse ``log`` and write the figure to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[float, float]]] = {"study": [], "trainer": []}
    target = None
    for line in Path(log).read_text().splitlines():
        if m := re.match(r"^(\w+): target ([\d.]+)%", line):
            target = float(m.group(2))
        if m := LINE.match(line):
            curves[m.group(1)].append((int(m.group(4)) / 60, float(m.group(3))))
    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=100)
    labels = {"study": "study's loop (Adam, batch 64, fp32)", "trainer": "Trainer recipe"}
    for key, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", ms=3, label=labels[key])
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"study's figure ({target:.2f}%)")
    ax.set_xlabel("training time (minutes, 2-core CPU)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(98.0, 99.7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
