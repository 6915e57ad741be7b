"""The Trainer: devices, precision, resume after a kill, early stopping, determinism, errors."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import read_only_folder

import mnist_zoo
from mnist_zoo.errors import (
    CheckpointError,
    InvalidArgumentError,
    OutputFolderError,
    TrainingError,
)
from mnist_zoo.models import DEFAULT_RELEASE
from mnist_zoo.training import (
    BASE_RECIPE,
    Callback,
    DeviceNotAvailableError,
    EarlyStopping,
    History,
    RandomAffine,
    TrainConfig,
    Trainer,
    get_recipe,
    seed_everything,
    select_device,
    select_precision,
)
from mnist_zoo.training.checkpoint import (
    CHECKPOINT_FORMAT,
    read_checkpoint,
    repair_best,
)
from mnist_zoo.training.optim import make_scheduler
from mnist_zoo.training.recipes import registered_recipe
from mnist_zoo.training.verify import payload_checksum

TIMING = ("images_per_s", "epoch_time_s")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(mnist_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """2,500 real training images (uint8) and labels: the pool the smaller sets are cut from."""
    train = mnist_zoo.MNIST(mnist_root, split="train")
    return train.images[:2500].clone(), train.targets[:2500].clone()


@pytest.fixture(scope="module")
def micro(small: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """600 of the images: 500 to train on after a 100-image validation split, 8 batches of 64.

    Enough for what checkpoints, resuming, schedules and determinism are about (several batches
    per epoch, a validation score), which do not need a model that has learned much.
    """
    return small[0][:600].clone(), small[1][:600].clone()


def _micro_trainer(model: torch.nn.Module | None = None, **kwargs: object) -> Trainer:
    return _trainer(model, **{"val_size": 100, **kwargs})


def _trainer(model: torch.nn.Module | None = None, **kwargs: object) -> Trainer:
    defaults: dict[str, object] = dict(
        device="cpu", precision="fp32", epochs=3, batch_size=64, val_size=500, progress=False
    )
    defaults.update(kwargs)
    if model is None:
        seed_everything(0)
        model = mnist_zoo.create_model("simplecnn")
    return Trainer(model, **defaults)  # type: ignore[arg-type]


def _strip_timing(history: History) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history.rows]


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- devices, precision


def test_cpu_device_and_auto_on_a_machine_without_accelerators() -> None:
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available() and not (
        torch.backends.mps.is_available() if hasattr(torch.backends, "mps") else False
    ):
        assert select_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_requested_but_absent_is_a_clear_error() -> None:
    with pytest.raises(DeviceNotAvailableError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(DeviceNotAvailableError, match="CUDA is not available"):
        _trainer(device="cuda:0")
    # The inference entry points name it too, instead of PyTorch's AssertionError.
    folder = Path(__file__).resolve().parents[1] / "hub" / "simplecnn"
    with pytest.raises(DeviceNotAvailableError, match="CUDA is not available"):
        mnist_zoo.load_pretrained(folder, device="cuda")
    model = mnist_zoo.load_pretrained(folder, device="auto")  # "auto" works here too
    with pytest.raises(DeviceNotAvailableError, match="CUDA is not available"):
        mnist_zoo.predict(model, torch.rand(2, 1, 28, 28), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_runs(small: tuple[torch.Tensor, torch.Tensor]) -> None:
    trainer = _trainer(device="cuda", precision="auto", epochs=1)
    trainer.fit(small)
    assert next(trainer.model.parameters()).is_cuda


@pytest.mark.skipif(
    hasattr(torch.backends, "mps") and torch.backends.mps.is_available(), reason="MPS is present"
)
def test_mps_requested_but_absent_is_a_clear_error() -> None:
    with pytest.raises(DeviceNotAvailableError, match="MPS is not available"):
        select_device("mps")


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        select_device("tpu")
    with pytest.raises(ValueError, match="Unknown device"):
        _trainer(device="gpu")


def test_precision_selection_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert select_precision("fp32", cpu) == "fp32"
    assert select_precision("bf16", cpu) == "bf16"
    assert select_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(ValueError, match="fp16.*needs a CUDA device"):
        select_precision("fp16", cpu)
    with pytest.raises(ValueError, match="Unknown precision 'fp8'"):
        select_precision("fp8", cpu)


@pytest.fixture(scope="module")
def learned(
    tiny: tuple[torch.Tensor, torch.Tensor],
) -> Callable[[str], tuple[Trainer, History]]:
    """A SimpleCNN trained for 2 epochs at a precision, once per module: the trainer, its history.

    800 images in batches of 32 (50 steps) reach about 90% validation accuracy, as 2,000 in
    batches of 64 did, at less than half the cost.
    """
    runs: dict[str, tuple[Trainer, History]] = {}

    def run(precision: str) -> tuple[Trainer, History]:
        if precision not in runs:
            trainer = _tiny_trainer(precision=precision, epochs=2, batch_size=32)
            runs[precision] = trainer, trainer.fit(tiny)
        return runs[precision]

    return run


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_cpu_precision_learns(
    precision: str, learned: Callable[[str], tuple[Trainer, History]]
) -> None:
    trainer, history = learned(precision)
    assert trainer.precision == precision
    assert trainer.channels_last == (precision != "fp32")
    assert history["val_acc"][-1] > 0.85, history.rows
    assert history["train_loss"][-1] < history["train_loss"][0]


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"optimizer": "lion"}, "Unknown optimizer 'lion'"),
        ({"scheduler": "cyclic"}, "Unknown scheduler 'cyclic'"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"val_size": -1}, "val_size must be >= 0"),
        ({"grad_clip": 0.0}, "grad_clip must be > 0"),
        ({"progress": "fancy"}, "progress must be"),
        ({"resume": True}, "resume=True needs a checkpoint_dir"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _trainer(**kwargs)


def test_model_must_be_a_module() -> None:
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Trainer("simplecnn")  # type: ignore[arg-type]


def test_empty_dataset_is_a_clear_error() -> None:
    empty = (torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="The training dataset is empty"):
        _trainer().fit(empty)
    with pytest.raises(ValueError, match="The evaluation dataset is empty"):
        _trainer().evaluate(empty)


def test_validation_split_larger_than_the_data_is_a_clear_error(
    small: tuple[torch.Tensor, torch.Tensor],
) -> None:
    with pytest.raises(ValueError, match="val_size=5000 leaves no training data"):
        _trainer(val_size=5000).fit(small)


def test_early_stopping_without_validation_is_a_clear_error(
    small: tuple[torch.Tensor, torch.Tensor],
) -> None:
    with pytest.raises(ValueError, match="Early stopping needs validation data"):
        _trainer(val_size=0, early_stopping=EarlyStopping()).fit(small)


def test_early_stopping_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="monitors 'val_loss' or 'val_acc'"):
        EarlyStopping(monitor="test_acc")
    with pytest.raises(ValueError, match="patience must be >= 1"):
        EarlyStopping(patience=0)


# --------------------------------------------------------------------------- behaviour


def test_determinism_same_seed_same_history(micro: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = _micro_trainer(epochs=2), _micro_trainer(epochs=2)
    ha, hb = a.fit(micro), b.fit(micro)
    assert _strip_timing(ha) == _strip_timing(hb)
    _assert_same_weights(a.model, b.model)
    c = _micro_trainer(epochs=2, seed=1)
    assert _strip_timing(c.fit(micro)) != _strip_timing(ha)


class _Crash(Callback):
    """Stands in for a killed process: dies right after epoch ``at``'s checkpoint is written."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("scheduler", ["onecycle", "plateau"])
def test_resume_after_crash_equals_uninterrupted_run(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor], scheduler: str
) -> None:
    kwargs = dict(epochs=3, scheduler=scheduler)
    reference = _micro_trainer(**kwargs)
    ref_history = reference.fit(micro)

    crashed = _micro_trainer(checkpoint_dir=tmp_path, callbacks=[_Crash(at=1)], **kwargs)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(micro)
    assert len(History.from_csv(tmp_path / "history.csv")) == 2

    resumed = _micro_trainer(checkpoint_dir=tmp_path, resume=True, **kwargs)  # a fresh model
    history = resumed.fit(micro)
    assert _strip_timing(history) == _strip_timing(ref_history)
    _assert_same_weights(resumed.model, reference.model)
    assert not list(tmp_path.glob("*.tmp"))


class _EpochLog(Callback):
    """Records the (0-based) epochs a run trains."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(epoch)


def test_resume_after_sigkill_in_a_real_process(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor]
) -> None:
    data = tmp_path / "data.pt"
    torch.save(micro, data)
    # The settings of every run, in the real processes and here, in the precision a default
    # run takes on this CPU: bf16 where it is native; emulated, it took 38 s of an AVX2 CPU.
    precision = select_precision("auto", torch.device("cpu"))
    settings = dict(device="cpu", precision=precision, epochs=2, batch_size=64, val_size=100,
                    progress=False)  # fmt: skip
    script = textwrap.dedent(
        f"""
        import os, signal, sys, torch, mnist_zoo
        from mnist_zoo.training import Callback, Trainer, seed_everything
        class Kill(Callback):
            def on_epoch_end(self, trainer, epoch, metrics):
                if epoch == 0:
                    os.kill(os.getpid(), signal.SIGKILL)
        seed_everything(0)
        model = mnist_zoo.create_model("simplecnn")
        t = Trainer(model, checkpoint_dir=sys.argv[1], callbacks=[Kill()], **{settings!r})
        t.fit(torch.load({str(data)!r}))
        print("not killed")
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "a")], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "a" / "last.pt").exists() and "not killed" not in killed.stdout
    # The resume and the uninterrupted run, here: only the kill needs a process of its own.
    seed_everything(0)
    log = _EpochLog()
    resumed = Trainer(
        mnist_zoo.create_model("simplecnn"), checkpoint_dir=tmp_path / "a", resume=True,
        callbacks=[log], **settings,
    )  # fmt: skip
    history = resumed.fit(torch.load(data))
    assert log.epochs == [1]  # the second epoch only: the first came from the checkpoint
    seed_everything(0)
    plain = Trainer(mnist_zoo.create_model("simplecnn"), checkpoint_dir=tmp_path / "b", **settings)
    assert _strip_timing(history) == _strip_timing(plain.fit(torch.load(data)))
    _assert_same_weights(resumed.model, plain.model)


def test_resume_refuses_a_checkpoint_of_other_settings(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor]
) -> None:
    _micro_trainer(epochs=1, checkpoint_dir=tmp_path).fit(micro)
    with pytest.raises(ValueError, match=r"different epochs \(1 there, 2 here\)"):
        _micro_trainer(epochs=2, checkpoint_dir=tmp_path, resume=True).fit(micro)


class _Snapshots(Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        model = trainer.ema.module if trainer.ema is not None else trainer.model
        self.states.append({k: v.clone() for k, v in model.state_dict().items()})


def test_early_stopping_stops_and_restores_the_best_weights(
    micro: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, labels = micro
    # Validation labels that are all wrong: the better the model learns, the worse val_loss
    # gets, so the best epoch is the first and training must stop after `patience` more.
    wrong_val = (images[:100], (labels[:100] + 1) % 10)
    snaps = _Snapshots()
    trainer = _trainer(
        epochs=8,
        scheduler="none",
        lr=1e-3,
        early_stopping=EarlyStopping(monitor="val_loss", patience=2),
        callbacks=[snaps],
    )
    history = trainer.fit((images[100:], labels[100:]), wrong_val)
    assert len(history) < 8
    best = min(range(len(history)), key=lambda i: history["val_loss"][i])
    assert len(history) == best + 1 + 2
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], snaps.states[best][k]) for k in final)
    assert not all(torch.equal(final[k], snaps.states[-1][k]) for k in final)


def test_checkpoints_and_history_files(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor]
) -> None:
    history = _micro_trainer(epochs=2, checkpoint_dir=tmp_path).fit(micro)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["config"]["epochs"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "history", "ema"} <= set(last)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(best["model"]) == set(last["model"])
    rows = json.loads((tmp_path / "history.json").read_text())
    assert rows == history.rows
    assert History.from_csv(tmp_path / "history.csv") == history


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "step", "none"])
def test_schedulers(scheduler: str, micro: tuple[torch.Tensor, torch.Tensor]) -> None:
    # 512 images in batches of 16: 32 steps an epoch, as 2,000 in batches of 64 gave, so the
    # per-batch schedules anneal as far by the last batch.
    data = micro[0][:512], micro[1][:512]
    history = _trainer(epochs=2, scheduler=scheduler, lr=2e-3, val_size=0, batch_size=16).fit(data)
    lr = history["lr"]
    if scheduler in ("onecycle", "cosine"):
        assert lr[-1] < 2e-3 * 0.01  # annealed to ~0 by the last batch
    elif scheduler == "step":
        assert lr == [2e-3, 2e-4]  # step size = epochs // 3 = 1 (at least 1)
    else:
        assert lr == [2e-3, 2e-3]


def test_any_dataset_and_dataloader_are_accepted(micro: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = micro
    ds = torch.utils.data.TensorDataset(images.float() / 255, labels)
    h1 = _trainer(epochs=1, val_size=100).fit(ds)
    assert 0 < h1["val_acc"][0] <= 1
    loader = torch.utils.data.DataLoader(ds, batch_size=50, shuffle=True)
    h2 = _trainer(epochs=1, val_size=0).fit(loader)
    assert len(h2) == 1 and "val_acc" not in h2.rows[0]
    with pytest.raises(ValueError, match="Cannot carve a validation split out of a DataLoader"):
        _trainer(epochs=1).fit(loader)


def test_evaluate_and_predict(
    small: tuple[torch.Tensor, torch.Tensor], learned: Callable[[str], tuple[Trainer, History]]
) -> None:
    trainer, _ = learned("fp32")  # trained on the first 800 of these images
    result = trainer.evaluate(small)
    assert result.num_images == 2500
    assert result.confusion.sum() == 2500
    assert 0.8 < result.accuracy <= 1.0
    assert "per-class accuracy" in result.format()


def test_plain_progress_prints_one_line_per_epoch(
    micro: tuple[torch.Tensor, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    _micro_trainer(epochs=2, progress="plain").fit(micro)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2
    assert "val_acc" in lines[0] and "img/s" in lines[0]


def test_random_affine_identity_and_range() -> None:
    x = torch.rand(8, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    same = RandomAffine(degrees=0, scale=(1.0, 1.0), translate=0.0)(x, gen)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    out = RandomAffine()(x, gen)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)


def test_random_affine_shift_moves_the_centre_of_mass() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[..., 12:16, 12:16] = 1.0
    shifted = RandomAffine(degrees=0, scale=(1.0, 1.0), translate=0.1)(
        x.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0)
    )
    cols = torch.arange(28.0)
    com = (shifted.sum(2).squeeze(1) * cols).sum(1) / shifted.sum((1, 2, 3))
    # Shifts of up to 10% of 28 px: within 2.8 px of the centre, and they vary.
    assert (com - 13.5).abs().max() <= 2.8 + 1e-3
    assert com.std() > 0.5


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor]
) -> None:
    data = tmp_path / "data.pt"
    torch.save(micro, data)
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, torch, mnist_zoo
            from mnist_zoo.training import Trainer, seed_everything
            seed_everything(0)
            model = mnist_zoo.create_model("deepercnn", batch_norm=True)
            t = Trainer(model, device="cpu", precision="fp32", epochs=2, batch_size=32,
                        val_size=100, progress="plain", checkpoint_dir={str(tmp_path / "ck")!r})
            h = t.fit(torch.load({str(data)!r}))
            torch.save(t.model.state_dict(), {str(tmp_path)!r} + f"/rank{{t.rank}}.pt")
            print("RANK", t.rank, "WORLD", t.world_size, "VAL", h["val_acc"][-1])
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WORLD 2" in proc.stdout
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    # Only rank 0 logs: one line per epoch, not two.
    assert proc.stdout.count("epoch 1/2") == 1
    # Each rank saw half of the 500 training images per epoch.
    last = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    assert last["config"]["batch_size"] == 64


def test_from_recipe_uses_the_registry_recipe_with_overrides() -> None:
    recipe = get_recipe("deepercnn")
    trainer = Trainer.from_recipe(
        "deepercnn", epochs=2, device="cpu", model_kwargs={"batch_norm": True}
    )
    assert trainer.config.epochs == 2
    assert trainer.config.lr == recipe.lr
    assert trainer.config.label_smoothing == recipe.label_smoothing
    assert trainer.model_name == "deepercnn" and trainer.model_kwargs == {"batch_norm": True}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.model.modules())
    # The recipe's seed fixes the initialisation.
    again = Trainer.from_recipe(
        "deepercnn", epochs=2, device="cpu", model_kwargs={"batch_norm": True}
    )
    _assert_same_weights(trainer.model, again.model)
    with pytest.raises(KeyError, match="Did you mean 'deepercnn'"):
        Trainer.from_recipe("deepcnn")


# --------------------------------------------------------------------------- the recipe as data


def test_trainer_without_arguments_trains_the_base_recipe() -> None:
    trainer = Trainer(mnist_zoo.create_model("simplecnn"))
    assert trainer.config == BASE_RECIPE == TrainConfig()
    # The recipe's warm-up wins: the Python and CLI quickstarts train the same schedule.
    assert BASE_RECIPE.warmup_epochs == 2.0
    # A registered name trains the recipe of the weights load_pretrained(name) gives.
    for name in ("simplecnn", "deepercnn", "minivgg"):
        assert get_recipe(name) == get_recipe(name, DEFAULT_RELEASE)
        assert get_recipe(name, "v0.1.0") == BASE_RECIPE


def test_base_recipe_is_what_the_published_weights_record() -> None:
    v0_1 = REPO / "hub" / "v0.1.0" / "simplecnn"
    stored = json.loads((v0_1 / "config.json").read_text())["recipe"]
    resolved = dataclasses.replace(BASE_RECIPE, precision=stored["precision"])
    # Same settings, same order: v0.1's config.json is the base recipe. Settings added since
    # (v0.2's appearance and elastic augmentation, the split seed of later ensemble members) are
    # off in the base recipe, so it reads back as the base recipe.
    written = json.loads(json.dumps(dataclasses.asdict(resolved)))
    assert written.pop("appearance") is None and written["augment"].pop("elastic") == 0.0
    assert written.pop("split_seed") is None
    assert written == stored
    assert list(written) == list(stored)
    assert TrainConfig.from_dict(stored) == resolved


def test_from_recipe_is_dataclasses_replace_of_the_registry_recipe() -> None:
    trainer = Trainer.from_recipe("simplecnn", epochs=2, lr=1e-3, device="cpu", progress=False)
    assert trainer.config == dataclasses.replace(get_recipe("simplecnn"), epochs=2, lr=1e-3)
    assert trainer.progress is False  # a run option, not part of the recipe
    config = TrainConfig(epochs=4, scheduler="cosine")
    assert Trainer(trainer.model, config, device="cpu").config == config
    assert Trainer(trainer.model, config, device="cpu", lr=0.1).config == dataclasses.replace(
        config, lr=0.1
    )


def test_a_dict_recipe_in_the_registry_becomes_a_train_config() -> None:
    entry = dataclasses.replace(
        mnist_zoo.registry.get_model_entry("deepercnn"),
        recipe={"epochs": 1, "augment": False, "model_kwargs": {"batch_norm": True}},
    )
    config, model_kwargs = registered_recipe(entry)
    assert config == dataclasses.replace(BASE_RECIPE, epochs=1, augment=None)
    assert model_kwargs == {"batch_norm": True}


@pytest.mark.parametrize(
    "setting",
    ["lr", "weight_decay", "warmup_epochs", "label_smoothing", "ema_decay", "grad_clip"],
)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(setting: str, value: float) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{setting} must be finite") as err:
        TrainConfig(**{setting: value})
    assert isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match=setting):
        _trainer(**{setting: value})


def test_data_that_would_train_silently_wrong_is_refused_before_training(
    micro: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, labels = micro
    log = _EpochLog()
    bad = [
        ((images.float(), labels), mnist_zoo.errors.ImageError, "Divide 0-255 values by 255"),
        ((images.float() / 255 - 0.5, labels), mnist_zoo.errors.ImageError, "must be in [0, 1]"),
        ((images, labels.float()), InvalidArgumentError, "integer class labels, got torch.float32"),
        ((images, labels - 1), InvalidArgumentError, "class labels 0 or more, got labels from -1"),
        ((images, labels + 1), InvalidArgumentError, "training dataset: Targets must be class"),
    ]
    for data, error, message in bad:
        with pytest.raises(error, match=re.escape(message)):
            _micro_trainer(callbacks=[log]).fit(data)
    assert log.epochs == []  # not one epoch trained on any of them
    # Labels the validation split gets are checked against the model's classes too.
    with pytest.raises(InvalidArgumentError, match="validation dataset: Targets"):
        _micro_trainer(val_size=0).fit(micro, val=(images[:64], labels[:64] + 10))
    # A Dataset of one's own goes through a DataLoader: its first batch is checked.
    dataset = torch.utils.data.TensorDataset(images.float(), labels)
    with pytest.raises(mnist_zoo.errors.ImageError, match="Divide 0-255 values by 255"):
        _micro_trainer(val_size=0, callbacks=[log]).fit(dataset)
    assert log.epochs == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"optimizer": "lion"}, "Unknown optimizer 'lion': choose one of adamw, adam, sgd"),
        ({"scheduler": "cyclic"}, "Unknown scheduler 'cyclic': choose one of onecycle"),
        ({"precision": "fp8"}, "Unknown precision 'fp8': choose one of auto, fp32"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"ema_decay": 1.0}, "ema_decay must be in"),
        ({"augment": "yes"}, "augment must be a RandomAffine"),
        ({"early_stopping": 3}, "early_stopping must be an EarlyStopping"),
    ],
)
def test_train_config_validates_every_setting(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_settings_are_refused_with_the_valid_names() -> None:
    model = mnist_zoo.create_model("simplecnn")
    with pytest.raises(TypeError, match=r"unknown setting\(s\) 'lrr'.*Recipe settings: epochs"):
        Trainer(model, lrr=0.1)
    with pytest.raises(TypeError, match="'warmup'.*run options: device"):
        Trainer.from_recipe("simplecnn", warmup=1.0)
    with pytest.raises(InvalidArgumentError, match="'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(model, {"epochs": 1})  # type: ignore[arg-type]


def test_the_recipe_is_frozen_and_round_trips_as_data() -> None:
    config = TrainConfig(
        epochs=3,
        augment=RandomAffine(degrees=5, scale=(0.95, 1.05)),
        early_stopping=EarlyStopping(monitor="val_acc", patience=2),
        grad_clip=1.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    assert TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config
    assert TrainConfig(augment=True).augment == RandomAffine()
    assert TrainConfig(augment=False).augment is None
    assert isinstance(TrainConfig(lr=1).lr, float)
    assert hash(config) == hash(dataclasses.replace(config))


def test_resume_refuses_another_recipe_listing_every_difference(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor]
) -> None:
    _micro_trainer(epochs=1, checkpoint_dir=tmp_path).fit(micro)
    with pytest.raises(CheckpointError) as err:
        _micro_trainer(epochs=2, lr=1e-3, checkpoint_dir=tmp_path, resume=True).fit(micro)
    message = str(err.value)
    assert "different epochs (1 there, 2 here), lr (0.003 there, 0.001 here)" in message
    assert "another checkpoint folder (checkpoint_dir=, --checkpoint-dir)" in message
    # The precision may change (a run can continue on other hardware).
    resumed = _micro_trainer(epochs=1, precision="bf16", checkpoint_dir=tmp_path, resume=True)
    assert len(resumed.fit(micro)) == 1


def test_an_unreadable_checkpoint_is_a_clear_error(
    tmp_path: Path, small: tuple[torch.Tensor, torch.Tensor]
) -> None:
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        _trainer(epochs=1, checkpoint_dir=tmp_path, resume=True).fit(small)


def test_checkpoints_record_the_resolved_recipe(
    tmp_path: Path, micro: tuple[torch.Tensor, torch.Tensor]
) -> None:
    trainer = _micro_trainer(epochs=1, precision="auto", checkpoint_dir=tmp_path)
    trainer.fit(micro)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["config"] == dataclasses.asdict(trainer.resolved_config)
    assert last["config"]["precision"] == trainer.precision != "auto"
    assert trainer.config.precision == "auto"


def test_devices_module_is_where_autocast_lives() -> None:
    from mnist_zoo import devices, evaluation

    assert evaluation.autocast_context is devices.autocast_context
    assert select_device is devices.select_device
    with pytest.raises(InvalidArgumentError, match="Unknown device 'tpu'"):
        devices.select_device("tpu")
    with devices.autocast_context(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with devices.autocast_context(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")


# --------------------------------------------------------------------------- hardening (issue 10)


@pytest.fixture(scope="module")
def tiny(small: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1,000 of the images: 800 to train on after a 200-image validation split."""
    return small[0][:1000].clone(), small[1][:1000].clone()


def _tiny_trainer(model: torch.nn.Module | None = None, **kwargs: object) -> Trainer:
    return _trainer(model, **{"val_size": 200, **kwargs})


class _Poison(Callback):
    """Makes the weights NaN right after epoch ``at``'s checkpoint is written."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.at:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(math.nan)


def test_a_loss_that_stops_being_finite_stops_training_with_the_last_good_checkpoint_intact(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    trainer = _tiny_trainer(epochs=3, checkpoint_dir=tmp_path, callbacks=[_Poison(at=0)])
    with pytest.raises(TrainingError, match=r"epoch 2: train_loss is nan.*lower it") as err:
        trainer.fit(tiny)
    assert isinstance(err.value, RuntimeError) and "\n" not in str(err.value)
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 0 and len(last["history"]) == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    best = read_checkpoint(tmp_path / "best.pt")
    assert all(torch.isfinite(t).all() for t in best["model"].values())


def test_a_diverging_run_saves_nothing(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    # A finite but absurd learning rate: the loss overflows within the first epoch.
    trainer = _tiny_trainer(
        epochs=2, optimizer="sgd", lr=1e12, scheduler="none", checkpoint_dir=tmp_path
    )
    with pytest.raises(TrainingError, match="epoch 1: train_loss is (nan|inf)"):
        trainer.fit(tiny)
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


def test_resume_refuses_another_recipe_and_names_the_way_to_allow_it(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    _tiny_trainer(epochs=1, checkpoint_dir=tmp_path).fit(tiny)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"lr \(0.003 there, 0.001 here\)") as err:
        _tiny_trainer(epochs=1, lr=1e-3, checkpoint_dir=tmp_path, resume=True).fit(tiny)
    message = str(err.value)
    assert "allow_recipe_change=True" in message and "--allow-recipe-change" in message
    assert (tmp_path / "last.pt").read_bytes() == before
    # Allowed or not, the seed and the validation split never change within a run.
    for change in ({"seed": 1}, {"val_size": 400}):
        with pytest.raises(CheckpointError, match="validation split"):
            _tiny_trainer(
                epochs=1, checkpoint_dir=tmp_path, resume=True, allow_recipe_change=True, **change
            ).fit(tiny)
    with pytest.raises(InvalidArgumentError, match="allow_recipe_change must be True or False"):
        _tiny_trainer(allow_recipe_change="yes")


def test_an_allowed_recipe_change_trains_the_new_recipe_from_the_resumed_epoch(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    crashed = _tiny_trainer(epochs=2, checkpoint_dir=tmp_path, callbacks=[_Crash(at=0)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(tiny)
    resumed = _tiny_trainer(
        epochs=3, lr=1e-3, checkpoint_dir=tmp_path, resume=True, allow_recipe_change=True
    )
    history = resumed.fit(tiny)
    assert len(history) == 3
    changes = [{"epoch": 2, "changed": {"epochs": [2, 3], "lr": [0.003, 0.001]}}]
    assert resumed.recipe_changes == changes
    # From epoch 2 on, the schedule is the new recipe's, where that recipe stands.
    new = _tiny_trainer(epochs=3, lr=1e-3).fit(tiny)
    assert history["lr"][1:] == pytest.approx(new["lr"][1:], rel=1e-12)
    assert history["lr"][0] == crashed.history["lr"][0]
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["config"]["lr"] == 1e-3 and last["config"]["epochs"] == 3
    assert last["recipe_changes"] == changes
    # Resuming the finished run again changes nothing and keeps the record.
    again = _tiny_trainer(epochs=3, lr=1e-3, checkpoint_dir=tmp_path, resume=True)
    assert len(again.fit(tiny)) == 3 and again.recipe_changes == changes


def test_a_checkpoint_resumes_only_into_the_model_it_holds(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = tiny[0][:400], tiny[1][:400]
    common = dict(epochs=1, batch_size=64, val_size=100, device="cpu", precision="fp32")
    # The v0.1.0 recipe is BASE_RECIPE, which the Trainer(model) below trains too.
    Trainer.from_recipe(
        "deepercnn", model_kwargs={"batch_norm": True}, checkpoint_dir=tmp_path,
        progress=False, release="v0.1.0", **common,
    ).fit((images, labels))  # fmt: skip
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["architecture"]["name"] == "deepercnn"
    assert last["architecture"]["kwargs"] == {"batch_norm": True}
    for name, kwargs in (("simplecnn", {}), ("deepercnn", {"batch_norm": False})):
        trainer = Trainer.from_recipe(
            name, model_kwargs=kwargs, checkpoint_dir=tmp_path, resume=True, progress=False,
            **common,
        )  # fmt: skip
        with pytest.raises(CheckpointError) as err:
            trainer.fit((images, labels))
        message = str(err.value)
        assert "\n" not in message
        assert "deepercnn(batch_norm=True) checkpoint" in message
        assert f"trains {name}(" in message
    # A model made with create_model records the same as from_recipe's.
    seed_everything(0)
    model = mnist_zoo.create_model("deepercnn", batch_norm=True)
    assert len(Trainer(model, checkpoint_dir=tmp_path, resume=True, progress=False,
                       **common).fit((images, labels))) == 1  # fmt: skip


def _tensor_data_offsets(path: Path) -> list[int]:
    """Byte offsets, in the file, of the data of each tensor record of a torch.save zip."""
    raw = path.read_bytes()
    offsets = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size > 0:
                header = info.header_offset
                name_len = int.from_bytes(raw[header + 26 : header + 28], "little")
                extra_len = int.from_bytes(raw[header + 28 : header + 30], "little")
                offsets.append(header + 30 + name_len + extra_len)
    return offsets


def test_a_flipped_byte_in_a_checkpoint_is_detected(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    _tiny_trainer(epochs=1, checkpoint_dir=tmp_path).fit(tiny)
    last = tmp_path / "last.pt"
    original = last.read_bytes()
    start = _tensor_data_offsets(last)[0]
    damaged = bytearray(original)
    damaged[start + 5] ^= 0x01
    last.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="does not match its checksum") as err:
        _tiny_trainer(epochs=1, checkpoint_dir=tmp_path, resume=True).fit(tiny)
    assert "Delete it" in str(err.value) and "\n" not in str(err.value)


def test_every_flipped_byte_is_refused_or_changes_nothing_that_is_loaded(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    _tiny_trainer(epochs=1, val_size=900, checkpoint_dir=tmp_path).fit(tiny)  # a small history
    path = tmp_path / "best.pt"
    original = path.read_bytes()
    checksum = read_checkpoint(path)["checksum"]
    rng = random.Random(0)
    positions = sorted(rng.sample(range(len(original)), 60)) + _tensor_data_offsets(path)
    refused = 0
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        try:
            content = read_checkpoint(path)
        except CheckpointError:
            refused += 1
            continue
        # Zip padding and unused header fields: the content is the original's.
        assert payload_checksum(content) == checksum, position
    assert refused > len(positions) // 2


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "EOFError|RuntimeError"),
        (b"\x8b\x12random bytes\x00\xff" * 50, "UnpicklingError|RuntimeError"),
        ([1, 2, 3], "it holds a list"),
        ({}, "not an mnist_zoo checkpoint"),
        ({"format": CHECKPOINT_FORMAT, "epoch": 0}, "it lacks model, ema, optimizer"),
        ({"format": "mnist_zoo.checkpoint/1", "epoch": 0}, "older mnist_zoo"),
        ("truncated", "RuntimeError|EOFError|UnpicklingError"),
    ],
    ids=["empty", "random", "list", "empty-dict", "no-keys", "old-format", "truncated"],
)
def test_an_unreadable_checkpoint_is_one_line_saying_what_to_do(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor], content: object, reason: str
) -> None:
    last = tmp_path / "last.pt"
    if content == "truncated":
        _tiny_trainer(epochs=1, val_size=900, checkpoint_dir=tmp_path).fit(tiny)
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif isinstance(content, bytes):
        last.write_bytes(content)
    else:
        buffer = io.BytesIO()
        torch.save(content, buffer)
        last.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError) as err:
        _tiny_trainer(epochs=1, val_size=900, checkpoint_dir=tmp_path, resume=True).fit(tiny)
    message = str(err.value)
    assert "\n" not in message and "not a readable checkpoint" in message
    assert re.search(reason, message), message
    assert "Delete it to start over, or pass another checkpoint folder" in message


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "step", "plateau", "none"])
def test_every_run_length_has_a_schedule(scheduler: str) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    for epochs in (1, 2, 3, 10, 20, 40):
        for steps in (1, 2, 3, 7):
            for warmup in (0.0, 1.0, 2.0, 100.0):
                config = TrainConfig(epochs=epochs, scheduler=scheduler, warmup_epochs=warmup)
                optimizer = torch.optim.AdamW([param], lr=config.lr)
                schedule = make_scheduler(optimizer, config, steps)
                lrs = []
                for _ in range(epochs * steps):
                    optimizer.step()
                    if scheduler in ("onecycle", "cosine"):
                        schedule.step()
                    lrs.append(optimizer.param_groups[0]["lr"])
                assert all(math.isfinite(lr) and lr >= 0 for lr in lrs), (epochs, steps, warmup)


def test_a_run_of_two_steps_trains(tiny: tuple[torch.Tensor, torch.Tensor]) -> None:
    # `mnist-zoo train simplecnn --epochs 1 --limit 5300`: 300 images, two batches of 128.
    images, labels = tiny[0][:300], tiny[1][:300]
    history = _tiny_trainer(epochs=1, batch_size=128, val_size=0).fit((images, labels))
    assert len(history) == 1 and math.isfinite(history["train_loss"][0])


class _Started(Callback):
    def __init__(self) -> None:
        self.started = False

    def on_fit_start(self, trainer: Trainer) -> None:
        self.started = True


@pytest.mark.parametrize("kind", ["file", "under-a-file", "read-only"])
def test_a_checkpoint_folder_that_cannot_be_written_is_found_before_training(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor], kind: str
) -> None:
    (tmp_path / "a-file").write_text("in the way")
    folder = {
        "file": tmp_path / "a-file",
        "under-a-file": tmp_path / "a-file" / "checkpoints",
        "read-only": read_only_folder(tmp_path) / "checkpoints",
    }[kind]
    started = _Started()
    trainer = _tiny_trainer(epochs=1, checkpoint_dir=folder, callbacks=[started])
    with pytest.raises(OutputFolderError, match="the checkpoint folder") as err:
        trainer.fit(tiny)
    assert isinstance(err.value, ValueError) and isinstance(err.value, OSError)
    assert not started.started and len(trainer.history) == 0


def _assert_consistent_pair(folder: Path) -> None:
    last = torch.load(folder / "last.pt", weights_only=True)
    best = torch.load(folder / "best.pt", weights_only=True)
    assert best["epoch"] == last["best"]["epoch"]
    assert all(torch.equal(best["model"][k], last["best"]["state"][k]) for k in best["model"])
    assert read_checkpoint(folder / "best.pt")["checksum"] == last["best_file"]["checksum"]


class _StopAtStart(Callback):
    def on_fit_start(self, trainer: Trainer) -> None:
        raise KeyboardInterrupt


def test_a_kill_between_best_and_last_leaves_a_pair_a_resume_makes_consistent(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    data = tmp_path / "data.pt"
    torch.save(tiny, data)
    # Killed with SIGKILL right after the first checkpoint file of the second epoch is written,
    # that is between best.pt and last.pt, both due since the second epoch is the best.
    script = textwrap.dedent(
        f"""
        import contextlib, os, signal, sys, torch, mnist_zoo
        from pathlib import Path
        from mnist_zoo.training import Trainer, seed_everything
        import mnist_zoo.training.checkpoint as checkpoint
        real, written = checkpoint.atomic_writer, []

        @contextlib.contextmanager
        def writer(path):
            with real(path) as f:
                yield f
            written.append(Path(path).name)
            if len(written) == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.atomic_writer = writer
        seed_everything(0)
        t = Trainer(mnist_zoo.create_model("simplecnn"), device="cpu", precision="fp32",
                    epochs=2, batch_size=64, val_size=200, progress=False,
                    checkpoint_dir=sys.argv[1])
        t.fit(torch.load({str(data)!r}))
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ck")], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    reference = _tiny_trainer(epochs=2)
    reference.fit(tiny)
    assert reference.history.best("val_acc")["epoch"] == 2  # so both files were due
    # A resume finds a consistent pair before it trains anything ...
    with pytest.raises(KeyboardInterrupt):
        _tiny_trainer(
            epochs=2, checkpoint_dir=tmp_path / "ck", resume=True, callbacks=[_StopAtStart()]
        ).fit(tiny)
    _assert_consistent_pair(tmp_path / "ck")
    # ... and ends where the uninterrupted run does.
    resumed = _tiny_trainer(epochs=2, checkpoint_dir=tmp_path / "ck", resume=True)
    resumed.fit(tiny)
    _assert_consistent_pair(tmp_path / "ck")
    _assert_same_weights(resumed.model, reference.model)


def test_repair_rewrites_a_missing_or_damaged_best_file_from_last(
    tmp_path: Path, tiny: tuple[torch.Tensor, torch.Tensor]
) -> None:
    _tiny_trainer(epochs=1, checkpoint_dir=tmp_path).fit(tiny)
    last = read_checkpoint(tmp_path / "last.pt")
    assert not repair_best(tmp_path, last)  # consistent: left alone
    original = read_checkpoint(tmp_path / "best.pt")
    for damage in (lambda p: p.unlink(), lambda p: p.write_bytes(b"junk")):
        damage(tmp_path / "best.pt")
        assert repair_best(tmp_path, last)
        assert read_checkpoint(tmp_path / "best.pt")["checksum"] == original["checksum"]
