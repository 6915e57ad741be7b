"""Training across machines: two torchrun nodes on this machine, Gloo over loopback.

The two-node test is part of the normal suite (the README's ``pytest`` runs it); it starts four
processes (two torchrun agents, two workers), so it takes some seconds. The other tests check
the pieces it relies on in this process: each rank's share of a global batch, and the refusal
of checkpoints that differ between the nodes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import mnist_zoo
from mnist_zoo.errors import CheckpointError
from mnist_zoo.training import RandomAffine, Trainer, seed_everything
from mnist_zoo.training.batches import TensorBatches, in_memory

#: A small run: 600 images, 100 held out, 2 epochs of 7 global batches of 64.
RUN = dict(device="cpu", precision="fp32", epochs=2, val_size=100)
PER_NODE_BATCH = 32

NODE_SCRIPT = """
import os, signal, sys, torch, mnist_zoo
from mnist_zoo.training import Callback, Trainer, seed_everything

mode, checkpoints, out, data = sys.argv[1:5]
rank = int(os.environ["RANK"])
# Every file the package writes goes through os.replace (atomic writes): log them per rank.
replace = os.replace
def logged_replace(src, dst):
    with open(os.path.join(out, f"writes-rank{{rank}}.txt"), "a") as log:
        print(os.path.basename(dst), file=log)
    replace(src, dst)
os.replace = logged_replace

class KillThisNode(Callback):
    def on_epoch_end(self, trainer, epoch, metrics):
        if mode == "kill" and epoch == 0 and trainer.rank == 1:
            os.kill(os.getppid(), signal.SIGKILL)  # the node's torchrun agent ...
            os.kill(os.getpid(), signal.SIGKILL)  # ... and its worker: the node is gone

seed_everything(0)
trainer = Trainer(mnist_zoo.create_model("simplecnn"), batch_size={batch}, progress="plain",
                  checkpoint_dir=checkpoints, resume=mode == "resume",
                  callbacks=[KillThisNode()], **{run!r})
trainer.fit(torch.load(data))
torch.save(trainer.model.state_dict(), os.path.join(out, f"rank{{rank}}.pt"))
print("RANK", trainer.rank, "WORLD", trainer.world_size, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_nodes(script: Path, *args: str, timeout: float = 240) -> list[tuple[int, str]]:
    """Start two torchrun nodes that meet at a c10d rendezvous on loopback; (status, output)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", str(script), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = []
    try:
        for node in nodes:
            output, _ = node.communicate(timeout=timeout)
            results.append((node.returncode, output))
    finally:
        for node in nodes:
            if node.poll() is None:  # a hung node: end its whole process group
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    return results


@pytest.fixture(scope="module")
def data(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = mnist_zoo.MNIST(mnist_root, split="train")
    path = tmp_path_factory.mktemp("ddp") / "data.pt"
    torch.save((train.images[:600].clone(), train.targets[:600].clone()), path)
    return path


def _single_process_weights(data: Path) -> dict[str, torch.Tensor]:
    seed_everything(0)
    trainer = Trainer(
        mnist_zoo.create_model("simplecnn"), batch_size=2 * PER_NODE_BATCH, progress=False, **RUN
    )
    trainer.fit(torch.load(data))
    return trainer.model.state_dict()


def _writes(out: Path, rank: int) -> set[str]:
    log = out / f"writes-rank{rank}.txt"
    return set(log.read_text().split()) if log.exists() else set()


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed Gloo"
)
def test_two_nodes_train_like_one_process_and_resume_after_a_node_dies(
    tmp_path: Path, data: Path
) -> None:
    script = tmp_path / "node.py"
    script.write_text(textwrap.dedent(NODE_SCRIPT.format(batch=PER_NODE_BATCH, run=RUN)))
    checkpoints = tmp_path / "shared" / "checkpoints"  # storage both nodes read

    # One node dies after the first epoch's checkpoint: the other one fails, it does not hang.
    killed = tmp_path / "killed"
    killed.mkdir()
    results = _two_nodes(script, "kill", str(checkpoints), str(killed), str(data))
    statuses = sorted(status for status, _ in results)
    assert statuses[0] == -signal.SIGKILL and statuses[1] != 0, results
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    assert last["epoch"] == 0
    assert last["config"]["batch_size"] == 2 * PER_NODE_BATCH  # the global batch

    # Both nodes resume from the shared checkpoint and finish the run.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    results = _two_nodes(script, "resume", str(checkpoints), str(resumed), str(data))
    assert [status for status, _ in results] == [0, 0], results
    output = "".join(text for _, text in results)
    assert "WORLD 2" in output and output.count("resumed from") == 1  # rank 0 speaks
    epochs = [line.split()[1] for line in output.splitlines() if line.startswith("epoch ")]
    assert epochs == ["2/2"]  # the second epoch only, logged once
    rank0 = torch.load(resumed / "rank0.pt", weights_only=True)
    rank1 = torch.load(resumed / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    # Only rank 0 wrote files, in both runs.
    for out in (killed, resumed):
        assert _writes(out, 1) == set()
    assert {"last.pt", "best.pt", "history.csv", "history.json"} <= _writes(resumed, 0)

    # The same weights as one process with the global batch, up to the order of float sums.
    single = _single_process_weights(data)
    for k in single:
        torch.testing.assert_close(rank0[k], single[k], rtol=1e-4, atol=1e-5)


def test_each_rank_trains_on_its_share_of_the_global_batch(data: Path) -> None:
    tensors = in_memory(torch.load(data))
    assert tensors is not None
    options = dict(training=True, device=torch.device("cpu"), seed=3, augment=RandomAffine())
    single = list(TensorBatches(tensors, batch_size=64, **options).epoch(1))  # type: ignore[arg-type]
    ranks = [
        list(TensorBatches(tensors, batch_size=32, rank=r, world_size=2, **options).epoch(1))  # type: ignore[arg-type]
        for r in range(2)
    ]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 600 // 64
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step][1], ranks[1][step][1]]), y)
        # The same images, warped the same way.
        torch.testing.assert_close(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x)


def test_nodes_that_find_different_checkpoints_refuse_to_start(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_everything(0)
    trainer = Trainer(
        mnist_zoo.create_model("simplecnn"), batch_size=64, progress=False,
        checkpoint_dir=tmp_path, **{**RUN, "epochs": 1},
    )  # fmt: skip
    trainer.fit(torch.load(data))
    # What rank 1 would report if its checkpoint folder were not the shared one.
    monkeypatch.setattr(
        "mnist_zoo.training.distributed.all_gather", lambda value, world: [value, "no checkpoint"]
    )
    resumed = Trainer(
        mnist_zoo.create_model("simplecnn"), batch_size=64, progress=False,
        checkpoint_dir=tmp_path, resume=True, **{**RUN, "epochs": 1},
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="rank 1: no checkpoint.*every machine reads"):
        resumed.fit(torch.load(data))
