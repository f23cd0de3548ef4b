import pytest
import torch

from labelwise.data.transforms import augment_batch, check_preset, random_shift
from labelwise.errors import ConfigError


def test_shift_moves_each_image_by_its_own_offset():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    y = random_shift(x, 0.125, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    pos = [divmod(int(img.flatten().argmax()), 16) for img in y[:, 0]]
    assert all(abs(r - 8) <= 2 and abs(c - 8) <= 2 for r, c in pos)
    assert len(set(pos)) > 5  # offsets differ per image
    assert torch.allclose(y.sum((1, 2, 3)), torch.ones(64))  # content kept, only moved


def test_augment_is_seeded_and_preserves_range():
    x = torch.rand(8, 3, 32, 32)
    a = augment_batch(x, "default", torch.Generator().manual_seed(1))
    b = augment_batch(x, "default", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(augment_batch(x, "none", torch.Generator()), x)


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="default"):
        check_preset("defualt")


def test_default_preset_shifts_tiny_images_by_at_most_two_pixels():
    # one bright pixel in the middle of a dark image: after the shift its row and column tell the offset
    for side, most in ((28, 2), (32, 2), (64, 8)):
        x = torch.zeros(400, 1, side, side)
        x[:, :, side // 2, side // 2] = 1.0
        y = augment_batch(x, "default", torch.Generator().manual_seed(1))
        pos = y.flatten(1).argmax(1)
        dy = (pos // side - side // 2).abs()
        dx = (pos % side - side // 2).abs()  # a flip moves the pixel by at most 1 at an even side
        assert int(dy.max()) == most, (side, int(dy.max()))
        assert int(dx.max()) <= most + 1
