"""Plot test accuracy against training time from the log of ``benchmarks/time_to_accuracy.py``.

    python benchmarks/time_to_accuracy.py simplecnn deepercnn | tee tta.log
    python docs/scripts/plot_time_to_accuracy.py tta.log docs/img/study/time_to_accuracy.png

Reads the per-epoch lines the benchmark prints (``study  NAME epoch N: test X%  (Ts)`` and
``trainer epoch N: test X%  (Ts)``) and draws, for each model in the log, one curve for the
study's loop and one for the Trainer's recipe, with the study's published accuracy as a line.
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

    # One panel per model: its section starts with "NAME: target X%".
    panels: dict[str, dict] = {}
    current: dict | None = None
    for line in Path(log).read_text().splitlines():
        if m := re.match(r"^(\w+): target ([\d.]+)%", line):
            current = {"target": float(m.group(2)), "study": [], "trainer": []}
            panels[m.group(1)] = current
        elif (m := LINE.match(line)) and current is not None:
            current[m.group(1)].append((int(m.group(4)) / 60, float(m.group(3))))
    if not panels:
        raise SystemExit(f"{log}: no 'NAME: target X%' section found")
    # One panel per row, as wide as the documentation's text column (720 px at 100 dpi), so
    # the page shows it at full size; side by side, each panel's labels shrank to unreadable.
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7.2, 3.3 * len(panels)), dpi=100, squeeze=False
    )
    labels = {"study": "study's loop (Adam, batch 64, fp32)", "trainer": "Trainer recipe"}
    for ax, (name, panel) in zip(axes[:, 0], panels.items(), strict=True):
        for key in ("study", "trainer"):
            if panel[key]:
                xs, ys = zip(*panel[key], strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=labels[key])
        target = panel["target"]
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"study's figure ({target:.2f}%)")
        ax.set_title(name)
        ax.set_xlabel("training time (minutes, 2-core CPU)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(98.0, 99.7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
