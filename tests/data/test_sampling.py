import numpy as np

from labelwise.data.loaders import ArrayDataset, make_train_loader, sampling_weights


def _targets():
    rng = np.random.default_rng(0)
    t = (rng.random((2000, 3)) < [0.4, 0.05, 0.01]).astype(np.uint8)
    t[:1000] = 0  # half the images carry no label
    return t


def test_plain_shuffle_needs_no_weights():
    assert sampling_weights(_targets(), True, balanced=False) is None


def test_balanced_sampler_draws_rare_labels_more_often():
    t = _targets()
    w = sampling_weights(t, True, balanced=True)
    assert np.isclose(w.sum(), 1.0)
    drawn_share = (w[:, None] * t).sum(0)
    assert np.all(drawn_share[1:] > 3 * t.mean(0)[1:])  # the rare labels are over-sampled
    ds = ArrayDataset(np.zeros((len(t), 1, 4, 4), np.uint8), t)
    loader = make_train_loader(ds, 100, seed=0, drop_last=False, weights=w)
    seen = np.concatenate([y.numpy() for _, y, _ in loader])
    assert len(seen) == len(t) and seen[:, 2].mean() > 3 * t[:, 2].mean()


def test_max_empty_fraction_caps_images_with_no_label():
    t = _targets()
    w = sampling_weights(t, True, balanced=False, max_empty_fraction=0.2)
    empty = t.sum(1) == 0
    assert np.isclose(w[empty].sum(), 0.2)
    w2 = sampling_weights(t, True, balanced=True, max_empty_fraction=0.1)
    assert w2[empty].sum() <= 0.1 + 1e-9


def test_multiclass_balanced_gives_each_class_equal_mass():
    y = np.repeat([0, 1, 2], [700, 200, 100])
    w = sampling_weights(np.eye(3, dtype=np.uint8)[y], False, balanced=True)
    np.testing.assert_allclose([w[y == k].sum() for k in range(3)], 1 / 3)
