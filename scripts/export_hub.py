"""Write ``model.onnx`` into the published Hub folders and record its SHA-256 in config.json.

    python scripts/export_hub.py                       # hub/simplecnn, hub/deepercnn, hub/minivgg
    python scripts/export_hub.py hub/minivgg --data DIR

Each file is exported by ``mnist_zoo.hub.write_onnx``: checked in ONNX Runtime against the
model's logits before it is kept, and its SHA-256 written into the folder's ``config.json``
as ``onnx_sha256``. With ``--data``, each file is also run on the full MNIST test set, and its
labels must be PyTorch's. The weights (``model.safetensors``) are never touched.

``config.json`` changes, so the registry's pins of its SHA-256 must be recomputed afterwards
(``python scripts/release.py --pins``); the script prints the new digests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.hub import load_onnx, sha256_file, write_onnx
from mnist_zoo.inference.batched import batched_logits

HUB = Path(__file__).resolve().parents[1] / "hub"


def main() -> int:
    """Export every folder given (default: the published ones); 1 if a test-set check fails."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="*", type=Path,
                   default=[HUB / name for name in mnist_zoo.list_pretrained()])  # fmt: skip
    p.add_argument("--data", help="MNIST folder: also compare labels on the full test set")
    args = p.parse_args()
    test = mnist_zoo.MNIST(args.data, split="test") if args.data else None
    status = 0
    for folder in args.folders:
        path = write_onnx(folder)
        config = sha256_file(folder / "config.json")
        line = f"{path}: onnx_sha256 {sha256_file(path)}, config.json {config}"
        if test is not None:
            onnx_labels = load_onnx(folder).logits(test.images, batch_size=1000).argmax(1)
            model = mnist_zoo.load_pretrained(folder)
            torch_labels = batched_logits(model, test.images, batch_size=500).argmax(1)
            differ = int((onnx_labels != torch_labels).sum())
            accuracy = float((onnx_labels == test.targets).float().mean())
            line += f"; test set: {differ} labels differ from PyTorch's, accuracy {accuracy:.2%}"
            status = max(status, int(differ > 0))
        print(line, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(run_command(main, "export_hub.py"))
