"""The fast path of predict(): when it is taken, what it changes, and the copy it runs.

``predict(model, images, precision="auto")`` runs a batch of at least ``FAST_PATH_MIN_BATCH``
images through a prepared copy of the model (batch norm folded, channels-last) under bf16
autocast, on a CPU with native bf16 and on CUDA; ``precision="fp32"`` is the exact path. The
measured record of what the fast path does to the published weights (``FAST_PATH_CHECKS``) is
checked here on the full MNIST test set.
"""

from __future__ import annotations

import gc
import inspect
import weakref
from pathlib import Path

import pytest
import torch
from published_logits import fp32_logits, mnist_test_set, published_model
from torch import nn

import mnist_zoo
from mnist_zoo import devices
from mnist_zoo.evaluation import evaluate_model
from mnist_zoo.inference import batched, stored_temperature
from mnist_zoo.inference.batched import (
    FAST_PATH_CHECKS,
    FAST_PATH_MIN_BATCH,
    FastPathCheck,
    batched_logits,
    clear_fast_copies,
    fast_copy,
    predict_logits,
    resolve_precision,
)

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the CPU has native bf16, so that "auto" picks the fast path on any machine."""
    monkeypatch.setattr(devices, "_cpu_supports_bf16", lambda: True)


@pytest.fixture
def no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_cpu_supports_bf16", lambda: False)


def seeded(name: str = "minivgg") -> nn.Module:
    torch.manual_seed(0)
    return mnist_zoo.create_model(name).eval()


# --- which path -------------------------------------------------------------------------------


def test_auto_is_bf16_for_batches_and_fp32_for_a_few_images(native_bf16: None) -> None:
    model = seeded()
    assert resolve_precision(model, "auto", CPU, FAST_PATH_MIN_BATCH) == "bf16"
    assert resolve_precision(model, "auto", CPU, 500) == "bf16"
    assert resolve_precision(model, "auto", CPU, FAST_PATH_MIN_BATCH - 1) == "fp32"
    assert resolve_precision(model, "auto", CPU, 1) == "fp32"
    assert resolve_precision(model, "fp32", CPU, 500) == "fp32"
    assert resolve_precision(model, "bf16", CPU, 1) == "bf16"  # forced, at any size


def test_auto_is_fp32_without_native_bf16(no_bf16: None) -> None:
    assert resolve_precision(seeded(), "auto", CPU, 500) == "fp32"


def test_a_model_whose_check_fails_keeps_fp32(
    native_bf16: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = seeded()
    failing = FastPathCheck(labels_changed=6, accuracy_change=0.0)
    monkeypatch.setitem(FAST_PATH_CHECKS, "minivgg", failing)
    assert resolve_precision(model, "auto", CPU, 500) == "fp32"
    x = torch.rand(64, 1, 28, 28)
    assert torch.equal(predict_logits(model, x), batched_logits(model, x, batch_size=256))
    # A model the table does not name takes the fast path.
    del model.pretrained_cfg
    assert resolve_precision(model, "auto", CPU, 500) == "bf16"


def test_the_limits_are_inclusive() -> None:
    assert FastPathCheck(labels_changed=5, accuracy_change=0.02).passes
    assert FastPathCheck(labels_changed=5, accuracy_change=-0.02).passes
    assert not FastPathCheck(labels_changed=6, accuracy_change=0.0).passes
    assert not FastPathCheck(labels_changed=0, accuracy_change=0.03).passes


def test_unknown_or_unavailable_precisions_are_refused() -> None:
    model = seeded("simplecnn")
    with pytest.raises(mnist_zoo.errors.InvalidArgumentError, match="Unknown precision"):
        mnist_zoo.predict(model, torch.rand(2, 28, 28), precision="int4")
    if not torch.cuda.is_available():
        with pytest.raises(mnist_zoo.errors.InvalidArgumentError, match="CUDA"):
            mnist_zoo.predict(model, torch.rand(2, 28, 28), precision="fp16")


def test_fp32_is_the_exact_path_and_stays_the_default_of_evaluation(native_bf16: None) -> None:
    model = seeded()
    x = torch.rand(40, 1, 28, 28)
    exact = torch.softmax(batched_logits(model, x, batch_size=256), dim=1)
    assert torch.equal(mnist_zoo.predict(model, x, precision="fp32").probs, exact)
    assert torch.equal(mnist_zoo.predict(model, x[:3]).probs, exact[:3])  # a few: exact
    assert inspect.signature(evaluate_model).parameters["precision"].default == "fp32"
    assert inspect.signature(mnist_zoo.predict).parameters["precision"].default == "auto"


def test_the_fast_path_returns_what_predict_promises(native_bf16: None) -> None:
    model = seeded()
    x = torch.rand(40, 1, 28, 28)
    fast = mnist_zoo.predict(model, x)
    exact = mnist_zoo.predict(model, x, precision="fp32")
    assert fast.probs.dtype == torch.float32 and fast.probs.shape == (40, 10)
    assert not fast.probs.is_inference()
    torch.testing.assert_close(fast.probs.sum(1), torch.ones(40))
    torch.testing.assert_close(fast.probs, exact.probs, atol=0.05, rtol=0)
    assert not torch.equal(fast.probs, exact.probs)  # it really ran in bf16
    # Chunking does not change the result beyond bf16's own noise.
    torch.testing.assert_close(
        mnist_zoo.predict(model, x, batch_size=20).probs, fast.probs, atol=0.05, rtol=0
    )


# --- the prepared copy ------------------------------------------------------------------------


def test_the_copy_is_prepared_once_and_the_model_is_left_alone() -> None:
    model = seeded().train()
    weight = model.features[0].weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = fast_copy(model)
    assert fast_copy(model) is copy
    assert copy is not model and not copy.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())  # folded
    assert copy.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in copy.parameters())
    # The model: same mode, same tensors, same layout.
    assert model.training and model.features[0].weight is weight and weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    mnist_zoo.predict(model, torch.rand(32, 1, 28, 28), precision="bf16")
    assert model.training


def test_folding_batch_norm_keeps_the_function() -> None:
    model = seeded()
    for m in model.modules():  # batch-norm statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fast_copy(model)(x), model(x), atol=1e-4, rtol=1e-4)


def test_the_copy_follows_the_weights() -> None:
    model = seeded("simplecnn")
    x = torch.rand(32, 1, 28, 28)
    first = fast_copy(model)
    # An optimizer step modifies the parameters in place: the copy is rebuilt.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    nn.functional.cross_entropy(model(x), torch.zeros(32, dtype=torch.long)).backward()
    optimizer.step()
    second = fast_copy(model)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(x), model.eval()(x), atol=1e-4, rtol=1e-4)
    # load_state_dict copies into the tensors in place: rebuilt again.
    model.load_state_dict(seeded("simplecnn").state_dict())
    assert fast_copy(model) is not second
    # A write through .data is invisible to the cache; clear_fast_copies forgets every copy.
    third = fast_copy(model)
    model.classifier[-1].bias.data.add_(1.0)
    assert fast_copy(model) is third
    clear_fast_copies()
    assert fast_copy(model) is not third


def test_a_copy_goes_when_its_model_goes() -> None:
    model = seeded("simplecnn")
    copy = weakref.ref(fast_copy(model))
    del model
    gc.collect()
    assert copy() is None


def test_a_model_that_cannot_be_copied_runs_as_it_is(native_bf16: None) -> None:
    class Uncopyable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = seeded("simplecnn")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

        def __deepcopy__(self, memo: dict) -> None:
            raise TypeError("cannot copy")

    model = Uncopyable().train()
    assert fast_copy(model) is model
    pred = mnist_zoo.predict(model, torch.rand(32, 1, 28, 28), precision="bf16")
    assert pred.probs.shape == (32, 10) and model.training  # run in eval mode, flag restored
    assert batched._FAST_COPIES.get(model) is None


# --- what the fast path does to the published weights -------------------------------------------


@pytest.fixture(scope="module")
def members() -> dict[str, nn.Module]:
    return {name: published_model(name) for name in mnist_zoo.list_pretrained()}


@pytest.fixture(scope="module")
def test_logits(
    members: dict[str, nn.Module], mnist_root: Path
) -> dict[str, dict[str, torch.Tensor]]:
    """Each published model's fp32 and fast-path logits on the full test set, computed once.

    The ensemble's fast path is run for real; its fp32 logits are combined from its members'
    (the next test shows that this is what Ensemble.forward computes in fp32).
    """
    if devices.select_precision("auto", CPU) == "fp32":
        # "auto" never takes the fast path on such a CPU, so the record does not apply to it;
        # and oneDNN's emulated bf16 took 23 minutes on an AVX2 CPU, native bf16 seconds.
        pytest.skip("the record is of native bf16, which this CPU lacks (no AVX512-BF16/AMX)")
    images = mnist_test_set(mnist_root).images
    logits = {
        name: {
            "fp32": fp32_logits(name, mnist_root),
            "bf16": predict_logits(model, images, batch_size=500, precision="bf16"),
        }
        for name, model in members.items()
    }
    ensemble = mnist_zoo.Ensemble(list(members.values())).eval()
    logits["ensemble"] = {
        "fp32": _ensemble_logits(
            [logits[name]["fp32"] for name in members],
            [stored_temperature(m) or 1.0 for m in members.values()],
        ),
        "bf16": predict_logits(ensemble, images, batch_size=500, precision="bf16"),
    }
    return logits


def _ensemble_logits(
    member_logits: list[torch.Tensor], temperatures: list[float] | None = None
) -> torch.Tensor:
    """Ensemble.forward (equal weights) on its members' fp32 logits and temperatures."""
    temperatures = temperatures or [1.0] * len(member_logits)
    log_probs = torch.stack(
        [torch.log_softmax(x / t, dim=1) for x, t in zip(member_logits, temperatures, strict=True)]
    )
    return torch.logsumexp(log_probs - torch.log(torch.tensor(float(len(member_logits)))), dim=0)


def test_the_ensembles_fp32_logits_are_its_members_combined(
    members: dict[str, nn.Module],
) -> None:
    ensemble = mnist_zoo.Ensemble(list(members.values())).eval()
    x = torch.rand(64, 1, 28, 28)
    combined = _ensemble_logits(
        [predict_logits(m, x, precision="fp32") for m in members.values()],
        [stored_temperature(m) or 1.0 for m in members.values()],
    )
    torch.testing.assert_close(
        predict_logits(ensemble, x, precision="fp32"), combined, atol=1e-5, rtol=1e-5
    )


def test_every_published_model_has_a_measured_check() -> None:
    assert set(FAST_PATH_CHECKS) == {*mnist_zoo.list_pretrained(), "ensemble"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [*mnist_zoo.list_pretrained(), "ensemble"])
def test_the_recorded_check_holds_on_the_full_test_set(
    name: str, test_logits: dict[str, dict[str, torch.Tensor]], mnist_root: Path
) -> None:
    """What FAST_PATH_CHECKS claims, measured: labels changed and accuracy moved against fp32."""
    targets = mnist_test_set(mnist_root).targets
    logits = test_logits[name]
    exact, fast = logits["fp32"].argmax(1), logits["bf16"].argmax(1)
    changed = int((fast != exact).sum())
    moved = 100 * float((fast == targets).float().mean() - (exact == targets).float().mean())
    measured = FastPathCheck(labels_changed=changed, accuracy_change=moved)
    recorded = FAST_PATH_CHECKS[name]
    # The default must be honest: where the fast path is the default, it passes here too.
    assert measured.passes == recorded.passes, (name, measured, recorded)
    if recorded.passes:
        assert changed <= batched.MAX_LABELS_CHANGED * len(targets)
        assert abs(moved) <= batched.MAX_ACCURACY_CHANGE
