import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, confusion_matrix as sk_confusion
from sklearn.utils.class_weight import compute_class_weight
from torchvision.transforms.v2 import functional as TF

from course_lib import data, imbalance


def _labels(device, counts=(50, 20, 5, 1), seed=0):
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    g = torch.Generator().manual_seed(seed)
    return y[torch.randperm(len(y), generator=g)].to(device)


def test_long_tail_counts_follow_the_exponential_profile():
    counts = imbalance.long_tail_counts(6000, 10, 100)
    assert counts[0] == 6000 and counts[-1] == 60
    assert counts == [int(math.floor(6000 * 100 ** (-c / 9) + 1e-9)) for c in range(10)]
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    ratios = [counts[c] / counts[c + 1] for c in range(9)]
    assert max(ratios) / min(ratios) < 1.01, "a constant ratio between neighbours: exponential"
    assert imbalance.long_tail_counts(100, 10, 1) == [100] * 10
    with pytest.raises(ValueError):
        imbalance.long_tail_counts(100, 10, 0.5)


def test_make_long_tailed(device):
    ds = data.load_dataset("digits", device=device, verbose=False)
    lt = imbalance.make_long_tailed(ds, 10, n_max=100, order=[3, 1, 4, 0, 5, 9, 2, 6, 8, 7],
                                    generator=torch.Generator().manual_seed(0))
    counts = imbalance.class_counts(lt.y_train, 10)
    want = imbalance.long_tail_counts(100, 10, 10)
    for rank, cls in enumerate([3, 1, 4, 0, 5, 9, 2, 6, 8, 7]):
        assert counts[cls].item() == want[rank]
    assert lt.x_train.device.type == device.type and torch.equal(lt.x_test, ds.x_test)
    # the kept images are images of the original split, with their own labels
    flat = ds.x_train.flatten(1)
    for i in [0, 17, len(lt.y_train) - 1]:
        j = int((flat == lt.x_train[i].flatten()).all(1).nonzero()[0])
        assert ds.y_train[j] == lt.y_train[i]
    with pytest.raises(ValueError):
        imbalance.make_long_tailed(ds, 10, n_max=10_000)


def test_class_weights_inverse_matches_sklearn_and_effective_number():
    y = _labels("cpu").numpy()
    counts = np.bincount(y)
    sk = compute_class_weight("balanced", classes=np.arange(4), y=y)
    np.testing.assert_allclose(imbalance.class_weights(counts, "inverse").numpy(), sk, rtol=1e-6)
    beta = 0.9
    eff = (1 - beta ** counts) / (1 - beta)
    w = 1 / eff
    np.testing.assert_allclose(imbalance.class_weights(counts, "effective", beta).numpy(), w * 4 / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(imbalance.class_weights(counts, "effective", 0.0).numpy(), np.ones(4), rtol=1e-6)
    near_one = imbalance.class_weights(counts, "effective", 1 - 1e-9).numpy()
    np.testing.assert_allclose(near_one / near_one.sum(), (1 / counts) / (1 / counts).sum(), rtol=1e-4)
    with pytest.raises(ValueError):
        imbalance.class_weights([3, 0, 1])


def test_class_weighted_loss_equals_balanced_per_class_mean():
    g = torch.Generator().manual_seed(0)
    y = _labels("cpu")
    z = torch.randn(len(y), 4, generator=g)
    w = imbalance.class_weights(imbalance.class_counts(y, 4), "inverse")
    per_sample = F.cross_entropy(z, y, reduction="none")
    per_class = torch.stack([per_sample[y == c].mean() for c in range(4)])
    # with inverse-frequency weights the weighted mean loss is the plain mean over classes of class means
    torch.testing.assert_close(F.cross_entropy(z, y, weight=w), per_class.mean())


def test_balanced_sampling_is_uniform_over_classes(device):
    y = _labels(device)
    w = imbalance.sample_weights(y, 4)
    sampler = torch.utils.data.WeightedRandomSampler(w.cpu().double(), 40_000, generator=torch.Generator().manual_seed(0))
    ref = np.bincount(y.cpu().numpy()[list(sampler)], minlength=4)
    idx = imbalance.balanced_indices(y, 4, 40_000, generator=torch.Generator().manual_seed(0))
    assert idx.device.type == device.type
    got = np.bincount(y[idx].cpu().numpy(), minlength=4)
    for counts in (got, ref):                       # chi-square vs uniform, 3 dof: 99.9% quantile 16.27
        chi2 = ((counts - 10_000) ** 2 / 10_000).sum()
        assert chi2 < 16.27, counts
    loader = imbalance.BalancedLoader(torch.zeros(len(y), 2, device=device), y, 4, 16,
                                      generator=torch.Generator().manual_seed(1))
    assert sum(len(yb) for _, yb in loader) == len(y) and len(loader) == -(-len(y) // 16)


def test_over_and_undersampling(device):
    y = _labels(device)
    g = torch.Generator().manual_seed(0)
    over = imbalance.oversample_indices(y, 4, g)
    assert imbalance.class_counts(y[over], 4).tolist() == [50] * 4
    assert set(range(len(y))) <= set(over.tolist()), "over-sampling keeps every sample"
    under = imbalance.undersample_indices(y, 4, g)
    assert imbalance.class_counts(y[under], 4).tolist() == [1] * 4
    assert len(set(under.tolist())) == len(under), "under-sampling draws without replacement"
    extra = imbalance.oversample_extra(y, 4, g)
    assert imbalance.class_counts(y[extra], 4).tolist() == [0, 30, 45, 49]


def test_random_crop_matches_torchvision(device):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 9, 7, generator=g).to(device)
    offsets = imbalance.crop_offsets(6, 2, generator=g)
    got = imbalance.random_crop(x, offsets, 2)
    padded = F.pad(x, [2] * 4)
    for i in range(6):
        top, left = offsets[i].tolist()
        torch.testing.assert_close(got[i], TF.crop(padded[i], top, left, 9, 7))
    torch.testing.assert_close(imbalance.random_crop(x, torch.full((6, 2), 2), 2), x)
    assert got.device.type == device.type
    off = imbalance.crop_offsets(20_000, 3, generator=torch.Generator().manual_seed(1))
    assert off.min() == 0 and off.max() == 6
    assert abs(off.float().mean().item() - 3) < 0.05 and abs(off.float().var().item() - 4) < 0.15  # uniform on 0..6


def test_oversample_with_crops(device):
    y = _labels(device)
    x = torch.rand(len(y), 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    x2, y2 = imbalance.oversample_with_crops(x, y, 4, padding=2, generator=torch.Generator().manual_seed(0))
    assert imbalance.class_counts(y2, 4).tolist() == [50] * 4
    torch.testing.assert_close(x2[:len(x)], x)
    assert not torch.equal(x2[len(x):], x[:len(x2) - len(x)])
    calls = []
    def spy(xs, offsets, padding):   # the student's random_crop, as the notebook passes it
        calls.append((len(xs), padding))
        return imbalance.random_crop(xs, offsets, padding)
    x3, y3 = imbalance.oversample_with_crops(x, y, 4, padding=2, generator=torch.Generator().manual_seed(0), crop=spy)
    assert calls == [(len(x2) - len(x), 2)] and torch.equal(x3, x2) and torch.equal(y3, y2)


def test_metrics_match_sklearn(device):
    g = torch.Generator().manual_seed(0)
    y = _labels(device)
    pred = torch.randint(0, 4, (len(y),), generator=g).to(device)
    pred[:40] = y[:40]
    cm = imbalance.confusion_matrix(y, pred, 4)
    np.testing.assert_array_equal(cm.cpu().numpy(), sk_confusion(y.cpu(), pred.cpu(), labels=range(4)))
    assert imbalance.balanced_accuracy(y, pred, 4) == pytest.approx(balanced_accuracy_score(y.cpu(), pred.cpu()))
    recall = imbalance.per_class_recall(cm)
    assert recall.mean().item() == pytest.approx(imbalance.balanced_accuracy(y, pred, 4))


def test_head_tail_split():
    assert imbalance.head_tail_split([5, 100, 50, 1, 70], 2) == ([1, 4], [0, 2, 3])


def test_internal_paths_match_the_references_they_replace():
    """make_long_tailed and balanced_indices do not call the exercises' references (left out of the student
    release): their own tail profile and weights give the same values. Both stay readable in the release, so a
    copy of either must score 0 (tests/test_release.py: REVIEWED_HELPERS)."""
    for n_max in (1, 7, 100, 1000, 6000):
        for c in range(1, 25):
            for ratio in (1, 1.5, 10, 100, 1000):
                assert imbalance._tail_profile(n_max, c, ratio) == imbalance.long_tail_counts(n_max, c, ratio)
    y = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    a = imbalance.balanced_indices(y, 3, 500, generator=torch.Generator().manual_seed(1))
    b = torch.multinomial(imbalance.sample_weights(y, 3), 500, replacement=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
