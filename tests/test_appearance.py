"""The v0.2 augmentations: RandomAppearance, elastic RandomAffine, compose."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from mnist_zoo import MNIST
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.training import BASE_RECIPE, RandomAffine, RandomAppearance, TrainConfig
from mnist_zoo.training.augment import compose


@pytest.fixture(scope="module")
def digits(mnist_root) -> torch.Tensor:
    return MNIST(mnist_root, split="test").images[:64].float().div(255)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_all_off_is_identity(digits):
    assert torch.equal(RandomAppearance()(digits, _gen()), digits)


def test_background_lifts_every_pixel_of_an_image_by_one_level(digits):
    out = RandomAppearance(background=0.4, p=1.0)(digits, _gen())
    black = digits == 0
    levels = [out[i][black[i]] for i in range(len(digits))]
    assert all(float(v.max() - v.min()) == 0 for v in levels)
    lifted = torch.stack([v[0] for v in levels])
    assert float(lifted.max()) <= 0.4 and float(lifted.min()) >= 0 and float(lifted.max()) > 0.2


def test_stroke_makes_digits_thicker_or_thinner(digits):
    out = RandomAppearance(stroke=1.0, p=1.0)(digits, _gen())
    ink_before, ink_after = digits.sum((1, 2, 3)), out.sum((1, 2, 3))
    assert (ink_after > ink_before).any() and (ink_after < ink_before).any()


def test_contrast_fades_ink_and_noise_is_bounded(digits):
    faded = RandomAppearance(contrast=0.5, p=1.0)(digits, _gen())
    assert float(faded.max()) < 1.0 and float(faded.amax((1, 2, 3)).min()) >= 0.5
    noisy = RandomAppearance(noise=0.2, p=1.0)(digits, _gen())
    assert not torch.equal(noisy, digits) and float(noisy.min()) >= 0 and float(noisy.max()) <= 1


def test_p_zero_changes_nothing(digits):
    aug = RandomAppearance(stroke=1.0, contrast=0.9, background=0.9, noise=0.5, p=0.0)
    assert torch.equal(aug(digits, _gen()), digits)


@pytest.mark.parametrize(
    "aug",
    [
        RandomAppearance(stroke=0.5, contrast=0.5, background=0.5, noise=0.1),
        RandomAffine(elastic=2.0),
        compose(RandomAffine(elastic=2.0), RandomAppearance(noise=0.1, background=0.3)),
        RandomAppearance(stroke=0.5, erase=0.5),
    ],
)
def test_parts_of_a_global_batch_replay_the_whole_batch(aug, digits):
    whole = aug(digits, _gen(3))
    parts = [aug(digits[i * 32 : (i + 1) * 32], _gen(3), share=(i, 2)) for i in range(2)]
    assert torch.equal(torch.cat(parts), whole)
    assert torch.equal(aug(digits, _gen(3)), whole)
    assert not torch.equal(aug(digits, _gen(4)), whole)


def test_base_affine_draws_what_v0_1_drew(digits):
    # The published v0.1 weights depend on this stream: elastic=0 must draw nothing more.
    g = _gen(7)
    RandomAffine()(digits, g)
    reference = _gen(7)
    torch.rand(len(digits), 4, generator=reference)
    assert torch.equal(g.get_state(), reference.get_state())


def test_erase_off_draws_what_v0_2_drew(digits):
    # The published v0.2 weights depend on this stream: erase=0 must draw nothing more.
    v02 = dict(stroke=0.5, contrast=0.5, background=0.5, noise=0.1)
    g, reference = _gen(7), _gen(7)
    RandomAppearance(**v02)(digits, g)
    torch.rand(len(digits), 8, generator=reference)
    torch.randn(len(digits), *digits.shape[1:], generator=reference)
    assert torch.equal(g.get_state(), reference.get_state())


def test_erase_fills_one_rectangle_per_image_with_one_grey_level(digits):
    out = RandomAppearance(erase=1.0)(digits, _gen())
    changed = out != digits
    for before, after, mask in zip(digits[:, 0], out[:, 0], changed[:, 0], strict=True):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        if len(rows) == 0:  # a fill level equal to every pixel it covers: nothing to see
            continue
        box = after[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert float(box.max() - box.min()) == 0  # one level over the whole rectangle
        area = len(rows) * len(cols) / mask.numel()
        assert area <= 1 / 3 + 0.02
        # Outside the rectangle, nothing moved.
        outside = torch.ones_like(mask)
        outside[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
        assert torch.equal(after[outside], before[outside])
    assert int(changed.any((1, 2, 3)).sum()) > len(digits) // 2
    assert torch.equal(RandomAppearance(erase=0.0)(digits, _gen()), digits)


def test_elastic_moves_pixels_beyond_the_affine_warp(digits):
    plain = RandomAffine(degrees=0, scale=(1, 1), translate=0)(digits, _gen())
    bent = RandomAffine(degrees=0, scale=(1, 1), translate=0, elastic=2.0)(digits, _gen())
    assert torch.allclose(plain, digits, atol=1e-4)
    assert (bent - digits).abs().amax((1, 2, 3)).min() > 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stroke": 1.5},
        {"contrast": 1.0},
        {"background": -0.1},
        {"noise": float("nan")},
        {"p": 2},
        {"stroke": True},
        {"erase": 1.5},
    ],  # fmt: skip
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidArgumentError, match="RandomAppearance"):
        RandomAppearance(**kwargs)
    with pytest.raises(InvalidArgumentError, match="elastic"):
        RandomAffine(elastic=-1)


def test_recipe_stores_and_reads_back_the_appearance():
    assert BASE_RECIPE.appearance is None
    config = TrainConfig(appearance={"stroke": 0.5, "noise": 0.1}, augment={"elastic": 2.0})
    assert config.appearance == RandomAppearance(stroke=0.5, noise=0.1)
    assert TrainConfig.from_dict(asdict(config)) == config
    # A config.json written before the field existed reads as "no appearance change".
    old = {k: v for k, v in asdict(BASE_RECIPE).items() if k != "appearance"}
    assert TrainConfig.from_dict(old) == BASE_RECIPE
    with pytest.raises(InvalidArgumentError, match="appearance"):
        TrainConfig(appearance={"thickness": 1})


def test_compose_skips_none_and_keeps_a_single_step():
    affine = RandomAffine()
    assert compose(None, None) is None
    assert compose(affine, None) is affine
