"""Inference speed: eager fp32, the predict default, ONNX Runtime fp32 and int8, in one run.

    python benchmarks/inference.py            # a few minutes on 2 CPU cores
    python benchmarks/inference.py --quick    # under a minute

For each model, with its published weights (``hub/NAME``), four ways to classify MNIST test
images, all through the same call shape (images in, a ``Prediction`` out):

* **eager fp32**: ``predict(model, x, precision="fp32")``, the exact path;
* **predict default**: ``predict(model, x)``, the fast path where it is the model's default
  (bf16 autocast, channels-last, batch norm folded, on a CPU with native bf16);
* **ORT fp32**: the model exported with ``mnist_zoo.export.export`` and run by
  ``OnnxModel.predict`` in ONNX Runtime;
* **ORT int8**: that file statically quantised by ``onnxruntime.quantization`` (QDQ, per-channel
  int8 weights, calibrated on 500 training images); listed only if its accuracy stays within
  0.05 points of fp32's.

Batch throughput is images/s at batch 500 over the test images (2,000 with ``--quick``, all
10,000 otherwise); single-image latency is the median of many one-image calls. The ways are
timed in alternating rounds and each keeps its best round, as ``benchmarks/throughput.py``
does. Each figure is also given as a ratio to eager fp32. For MiniVGG, the achieved GFLOP/s of
each way is set against a matrix multiply of the same precision timed in the same run.

The fast path is also checked where it matters: labels changed against fp32 and the accuracy
it moves, on the same test images, against ``FAST_PATH_CHECKS`` (the per-model defaults).

Exits with status 1 when the predict default is below ``--min-ratio`` (2.5) times eager fp32's
batch throughput for any model on a machine with native bf16, or (full run only) when the
measured fast-path check disagrees with ``FAST_PATH_CHECKS``. Beyond the gate it reports the
goals: the predict default at least as fast as ORT fp32 on batches, and its single-image latency
within 1.5x of ORT's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peak import matmul_gflops
from torch.utils.flop_counter import FlopCounterMode

import mnist_zoo
from mnist_zoo.devices import select_precision
from mnist_zoo.errors import run_command
from mnist_zoo.export import OnnxModel, export
from mnist_zoo.inference import Prediction
from mnist_zoo.inference.batched import (
    FAST_PATH_CHECKS,
    MAX_ACCURACY_CHANGE,
    FastPathCheck,
    predict_logits,
    resolve_precision,
)

HUB = Path(__file__).resolve().parents[1] / "hub"
BATCH = 500
#: How far int8 may move the accuracy, in points, and still be listed.
INT8_MAX_DROP = 0.05
Runner = Callable[[torch.Tensor], Prediction]


def forward_flops_per_image(model: torch.nn.Module) -> float:
    """Forward FLOPs of one image (counted by PyTorch)."""
    x = torch.rand(16, 1, 28, 28)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / len(x)


def int8_model(fp32_file: Path, calibration: torch.Tensor, threads: int) -> OnnxModel:
    """``fp32_file`` statically quantised to int8 (QDQ, per-channel weights) by ORT's tools."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": c.numpy()} for c in calibration.split(50)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepared = fp32_file.with_suffix(".pre.onnx")
    quantized = fp32_file.with_suffix(".int8.onnx")
    quant_pre_process(str(fp32_file), str(prepared))
    quantize_static(
        str(prepared),
        str(quantized),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return OnnxModel(quantized, threads=threads)


def time_batches(
    runners: dict[str, Runner], x: torch.Tensor, rounds: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Best images/s of each runner over ``x`` in batches of 500, timed in alternating rounds.

    Also returns each runner's labels (from its last round), for the accuracy checks.
    """
    best = dict.fromkeys(runners, 0.0)
    labels = {}
    for runner in runners.values():
        runner(x[:BATCH])  # warm-up: first calls allocate, prepare copies, plan kernels
    for _ in range(rounds):
        for name, runner in runners.items():
            start = time.perf_counter()
            prediction = runner(x)
            best[name] = max(best[name], len(x) / (time.perf_counter() - start))
            labels[name] = prediction.labels
    return best, labels


def time_single(
    runners: dict[str, Runner], x: torch.Tensor, rounds: int, calls: int
) -> dict[str, float]:
    """Best (over rounds) median ms of one-image calls, the runners alternating by round."""
    best = dict.fromkeys(runners, float("inf"))
    for runner in runners.values():
        for i in range(5):
            runner(x[i : i + 1])
    for _ in range(rounds):
        for name, runner in runners.items():
            times = []
            for i in range(calls):
                image = x[i % len(x) : i % len(x) + 1]
                start = time.perf_counter()
                runner(image)
                times.append(time.perf_counter() - start)
            best[name] = min(best[name], 1000 * statistics.median(times))
    return best


def fast_path_check(
    model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
) -> FastPathCheck:
    """Labels changed and accuracy moved (points) by the bf16 fast path against fp32."""
    exact = predict_logits(model, images, batch_size=BATCH, precision="fp32").argmax(1)
    fast = predict_logits(model, images, batch_size=BATCH, precision="bf16").argmax(1)
    moved = 100 * float((fast == targets).float().mean() - (exact == targets).float().mean())
    return FastPathCheck(int((fast != exact).sum()), moved, images=len(images))


def runners_for(model: torch.nn.Module, onnx_models: dict[str, OnnxModel]) -> dict[str, Runner]:
    runners: dict[str, Runner] = {
        "eager fp32": lambda x: mnist_zoo.predict(model, x, batch_size=BATCH, precision="fp32"),
        "predict default": lambda x: mnist_zoo.predict(model, x, batch_size=BATCH),
    }
    for label, onnx_model in onnx_models.items():
        runners[label] = lambda x, m=onnx_model: m.predict(x, batch_size=BATCH)
    return runners


def bench_model(
    name: str, x: torch.Tensor, targets: torch.Tensor, calibration: torch.Tensor,
    args: argparse.Namespace, workdir: Path,
) -> tuple[dict[str, float], dict[str, float], str, FastPathCheck]:  # fmt: skip
    """Batch images/s and single-image ms of every way to run ``name``; prints its rows."""
    model = mnist_zoo.load_pretrained(HUB / name)
    threads = torch.get_num_threads()
    onnx_file = export(model, workdir / f"{name}.onnx")
    onnx_models = {
        "ORT fp32": OnnxModel(onnx_file, threads=threads),
        "ORT int8": int8_model(onnx_file, calibration, threads),
    }
    runners = runners_for(model, onnx_models)
    rates, labels = time_batches(runners, x, args.rounds)
    latency = time_single(runners, x, args.rounds, args.calls)
    correct = {way: int((found == targets).sum()) for way, found in labels.items()}
    acc = {way: 100 * c / len(targets) for way, c in correct.items()}
    int8_note = f"int8 accuracy {acc['ORT int8']:.2f}% vs fp32 {acc['ORT fp32']:.2f}%"
    if abs(acc["ORT int8"] - acc["ORT fp32"]) > INT8_MAX_DROP + 1e-9:  # 1 image is 0.05 of 2,000
        int8_note += f": not listed (moves accuracy by more than {INT8_MAX_DROP} points)"
        for table in (rates, latency):
            del table["ORT int8"]
    default = resolve_precision(model, "auto", torch.device("cpu"), BATCH)
    if default == "bf16":  # the timed predict default was the fast path: check its labels
        changed = int((labels["predict default"] != labels["eager fp32"]).sum())
        moved = acc["predict default"] - acc["eager fp32"]
        check = FastPathCheck(changed, moved, images=len(x))
    else:
        check = fast_path_check(model, x, targets)
    for way in rates:
        label = f"predict default ({default})" if way == "predict default" else way
        print(f"{name if way == 'eager fp32' else '':<11}{label:<24}"
              f"{rates[way]:>10.0f}{rates[way] / rates['eager fp32']:>7.2f}x"
              f"{latency[way]:>10.3f}{latency['eager fp32'] / latency[way]:>7.2f}x")  # fmt: skip
    ort_batch = rates["predict default"] / rates["ORT fp32"]
    ort_single = latency["predict default"] / latency["ORT fp32"]
    print(
        f"{'':<11}predict default vs ORT fp32: batch {ort_batch:.2f}x its throughput (goal "
        f">= 1), single image {ort_single:.2f}x its latency (goal <= 1.5); {int8_note}"
    )
    recorded = FAST_PATH_CHECKS.get(name)
    print(f"{'':<11}fast path vs fp32 on {len(x):,} test images: {check.labels_changed} labels "
          f"changed, accuracy {check.accuracy_change:+.2f} points "
          f"({'within' if check.passes else 'OUTSIDE'} the limits; FAST_PATH_CHECKS records "
          f"{recorded.labels_changed if recorded else '-'} and "
          f"{f'{recorded.accuracy_change:+.2f}' if recorded else '-'})", flush=True)  # fmt: skip
    return rates, latency, default, check


def report_minivgg_flops(rates: dict[str, float], default: str, seconds: float) -> None:
    """MiniVGG's achieved GFLOP/s per way, against a matmul of its precision timed now."""
    flops = forward_flops_per_image(mnist_zoo.create_model("minivgg"))
    print(f"minivgg: {flops / 1e9:.3f} GFLOP per image (forward)")
    peaks = {"fp32": matmul_gflops(torch.float32, seconds)}
    if default != "fp32":
        peaks[default] = matmul_gflops(torch.bfloat16, seconds)
    for way, rate in rates.items():
        achieved = flops * rate / 1e9
        if way == "ORT int8":  # no int8 matmul is timed: its peak is not fp32's
            print(f"  {way:<24}{achieved:>6.0f} GFLOP/s achieved (int8 arithmetic)")
            continue
        precision = default if way == "predict default" else "fp32"
        share = 100 * achieved / peaks[precision]
        print(
            f"  {way:<24}{achieved:>6.0f} GFLOP/s achieved; {precision} matmul peak "
            f"{peaks[precision]:.0f} GFLOP/s ({share:.0f}% of peak)"
        )


def main() -> int:
    """Run the comparison and print the table; the exit status says whether the gate held."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2,000 test images, fewer rounds")
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--models", nargs="+", default=mnist_zoo.list_pretrained())
    p.add_argument(
        "--min-ratio",
        type=float,
        default=2.5,
        help="least predict-default / eager-fp32 batch throughput (native bf16 only)",
    )
    args = p.parse_args()
    args.rounds, args.calls = (2, 30) if args.quick else (3, 200)

    test = mnist_zoo.MNIST(args.data, split="test")
    count = 2000 if args.quick else len(test)
    x, targets = test.images[:count].float() / 255, test.targets[:count]
    calibration = mnist_zoo.MNIST(args.data, split="train").images[:500].float() / 255
    native = select_precision("auto", torch.device("cpu")) != "fp32"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {'yes' if native else 'no'}; "
          f"{count:,} test images, batch {BATCH}")  # fmt: skip
    print(f"{'model':<11}{'way':<24}{'img/s':>10}{'ratio':>8}{'1-img ms':>10}{'speed':>8}")
    ratios: dict[str, float] = {}
    stale: list[str] = []
    vgg: tuple[dict[str, float], str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rates, _, default, check = bench_model(name, x, targets, calibration, args, Path(tmp))
            ratios[name] = rates["predict default"] / rates["eager fp32"]
            recorded = FAST_PATH_CHECKS.get(name)
            if recorded is not None and recorded.passes != check.passes:
                stale.append(name)
            if name == "minivgg":
                vgg = (rates, default)
    if vgg is not None:
        report_minivgg_flops(*vgg, 1.0 if args.quick else 3.0)

    gate = all(r >= args.min_ratio for r in ratios.values()) if native else True
    summary = ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items())
    if stale:
        print(f"FAST_PATH_CHECKS is out of date for {', '.join(stale)} (the measured check "
              f"{'passes' if not FAST_PATH_CHECKS[stale[0]].passes else 'fails'} here): update "
              "it in src/mnist_zoo/inference/batched.py")  # fmt: skip
    ok = gate and (args.quick or not stale)
    need = f"need >= {args.min_ratio:.1f}x each" if native else "no native bf16: not gated"
    print(f"{'PASS' if ok else 'FAIL'}: predict default / eager fp32 batch throughput {summary} "
          f"({need}; accuracy limit {MAX_ACCURACY_CHANGE} points)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "inference.py"))
