"""course_lib.augment against torchvision.transforms.v2.functional and scikit-image, on every device,
plus statistical tests of the parameter sampling."""
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from scipy import stats
from skimage import color
from torch.utils._python_dispatch import TorchDispatchMode

from course_lib import augment as A


def _images(n=6, c=3, h=20, w=24, seed=0, device="cpu"):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)).to(device)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ geometric functions

def test_hflip_matches_torchvision(device):
    x = _images(device=device)
    mask = torch.tensor([True, False, True, True, False, False])
    out = A.hflip(x, mask)
    assert out.device.type == device.type
    expected = torch.stack([TF.horizontal_flip(img) if m else img for img, m in zip(x, mask)])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(A.hflip(x, True), TF.horizontal_flip(x), rtol=0, atol=0)


@pytest.mark.parametrize("padding,size", [(0, (16, 18)), (2, (20, 24)), (4, 12), (3, (7, 25))])
def test_crop_matches_torchvision(device, padding, size):
    x = _images(device=device)
    h, w = (size, size) if isinstance(size, int) else size
    g = _gen(1)
    top = torch.randint(0, 20 + 2 * padding - h + 1, (6,), generator=g)
    left = torch.randint(0, 24 + 2 * padding - w + 1, (6,), generator=g)
    out = A.crop(x, top.to(device), left.to(device), size, padding=padding)
    assert out.device.type == device.type and out.shape == (6, 3, h, w)
    expected = torch.stack([TF.crop(TF.pad(img, [padding]), int(t), int(l), h, w) for img, t, l in zip(x, top, left)])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_crop_rejects_windows_outside_the_padded_image():
    x = _images()
    with pytest.raises(ValueError, match="inside the padded"):
        A.crop(x, torch.full((6,), 5), 0, 16, padding=0)
    with pytest.raises(ValueError, match="integers"):
        A.crop(x, torch.zeros(6), 0, 16)


@pytest.mark.parametrize("box,size", [((2, 3, 10, 12), (20, 24)), ((0, 0, 20, 24), (8, 9)),
                                      ((5, 1, 7, 15), (13, 30)), ((1, 2, 19, 3), (5, 5))])
def test_resized_crop_matches_torchvision(device, box, size):
    x = _images(device=device)
    out = A.resized_crop(x, *box, size)
    expected = TF.resized_crop(x, *box, list(size), antialias=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_resized_crop_per_sample_boxes(device):
    x = _images(device=device)
    g = _gen(2)
    h = torch.randint(3, 21, (6,), generator=g)
    w = torch.randint(3, 25, (6,), generator=g)
    top = (torch.rand(6, generator=g) * (20 - h + 1)).long()
    left = (torch.rand(6, generator=g) * (24 - w + 1)).long()
    out = A.resized_crop(x, top, left, h, w, 16)
    expected = torch.stack([TF.resized_crop(img, int(t), int(l), int(hh), int(ww), [16, 16], antialias=False)
                            for img, t, l, hh, ww in zip(x, top, left, h, w)])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("angle,scale", [(30.0, 1.0), (-15.0, 1.2), (90.0, 1.0), (10.0, 0.8)])
def test_rotate_scale_matches_torchvision_affine(device, angle, scale):
    x = _images(device=device)
    out = A.rotate_scale(x, angle, scale)
    expected = TF.affine(x, angle=-angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
                         interpolation=TF.InterpolationMode.BILINEAR)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    if scale == 1.0:
        rotated = TF.rotate(x, angle, interpolation=TF.InterpolationMode.BILINEAR)
        torch.testing.assert_close(out, rotated, rtol=0, atol=1e-5)


def test_rotate_by_90_degrees_is_rot90_and_per_sample(device):
    x = _images(n=2, h=16, w=16, device=device)
    out = A.rotate_scale(x, torch.tensor([90.0, 0.0]), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(out[0], torch.rot90(x[0], 1, (1, 2)), rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], x[1], rtol=0, atol=1e-5)


def test_gaussian_noise(device):
    x = _images(device=device)
    noise = torch.randn(x.shape, generator=_gen(3)).to(device)
    sigma = torch.linspace(0.0, 0.5, 6)
    out = A.gaussian_noise(x, noise, sigma, clip=False)
    torch.testing.assert_close(out, x + sigma.to(device).reshape(-1, 1, 1, 1) * noise)
    clipped = A.gaussian_noise(x, noise, 0.3)
    assert clipped.min() >= 0 and clipped.max() <= 1
    torch.testing.assert_close(clipped, (x + 0.3 * noise).clamp(0, 1))


# ---------------------------------------------------------------------------------- colour functions

def _skimage_hsv(x):
    return torch.as_tensor(color.rgb2hsv(x.cpu().permute(0, 2, 3, 1).double().numpy())).permute(0, 3, 1, 2)


def _with_grey_and_ties(x):
    x = x.clone()
    x[0, :, :3, :3] = 0.4  # grey: S = 0, H = 0
    x[1, :, 0, :] = 0.0  # black
    x[2, 1, :2] = x[2, 0, :2]  # ties between R and G
    x[3, 2, :2] = x[3, 1, :2]  # ties between G and B
    return x


def test_rgb_to_hsv_matches_skimage_and_torchvision(device):
    from torchvision.transforms.v2.functional._color import _rgb_to_hsv
    x = _with_grey_and_ties(_images(device=device))
    hsv = A.rgb_to_hsv(x)
    assert hsv.device.type == device.type
    torch.testing.assert_close(hsv.cpu().double(), _skimage_hsv(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(hsv, _rgb_to_hsv(x), rtol=0, atol=1e-6)


def test_hsv_round_trip(device):
    x = _with_grey_and_ties(_images(device=device))
    torch.testing.assert_close(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, rtol=0, atol=2e-6)
    hsv = _skimage_hsv(x).float()
    expected = torch.as_tensor(color.hsv2rgb(hsv.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    torch.testing.assert_close(A.hsv_to_rgb(hsv.to(device)).cpu(), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("hue", [0.07, -0.1, 0.3, -0.5])
def test_hue_shift_matches_torchvision_adjust_hue(device, hue):
    x = _with_grey_and_ties(_images(device=device))
    out = A.adjust_hsv(x, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, hue)
    torch.testing.assert_close(out, TF.adjust_hue(x, hue), rtol=0, atol=2e-6)


def test_adjust_hsv_per_sample_recipe(device):
    x = _with_grey_and_ties(_images(device=device))
    g = _gen(4)
    p = dict(s_pow=torch.exp(torch.empty(6).uniform_(math.log(0.25), math.log(4), generator=g)),
             s_mul=torch.empty(6).uniform_(0.7, 1.4, generator=g), s_add=torch.empty(6).uniform_(-0.1, 0.1, generator=g),
             v_pow=torch.exp(torch.empty(6).uniform_(math.log(0.25), math.log(4), generator=g)),
             v_mul=torch.empty(6).uniform_(0.7, 1.4, generator=g), v_add=torch.empty(6).uniform_(-0.1, 0.1, generator=g),
             h_add=torch.empty(6).uniform_(-0.1, 0.1, generator=g))
    out = A.adjust_hsv(x, **{k: v.to(device) for k, v in p.items()})
    # the recipe written out with scikit-image's colour conversions, one image at a time
    hsv = _skimage_hsv(x).numpy()
    expected = []
    for i in range(6):
        h, s, v = hsv[i]
        q = {k: float(t[i]) for k, t in p.items()}
        s = np.clip(s ** q["s_pow"] * q["s_mul"] + q["s_add"], 0, 1)
        v = np.clip(v ** q["v_pow"] * q["v_mul"] + q["v_add"], 0, 1)
        h = np.mod(h + q["h_add"], 1.0)
        expected.append(color.hsv2rgb(np.stack([h, s, v], -1)).transpose(2, 0, 1))
    torch.testing.assert_close(out.cpu().double(), torch.as_tensor(np.stack(expected)), rtol=0, atol=1e-5)


def test_fit_fancy_pca_is_the_pixel_covariance(device):
    x = _images(n=8, device=device)
    x[:, 1] = 0.6 * x[:, 0] + 0.4 * x[:, 1]  # correlated channels
    eigvals, eigvecs = A.fit_fancy_pca(x)
    pixels = x.cpu().permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    cov = np.cov(pixels, bias=True)
    ref_vals, ref_vecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(eigvals.cpu().double().numpy(), ref_vals[::-1], rtol=1e-5, atol=1e-7)
    vecs = eigvecs.cpu().double().numpy()
    np.testing.assert_allclose(np.abs(vecs.T @ ref_vecs[:, ::-1]), np.eye(3), atol=1e-5)  # same axes up to sign
    np.testing.assert_allclose(vecs @ np.diag(eigvals.cpu().double().numpy()) @ vecs.T, cov, atol=1e-6)
    assert np.all(np.take_along_axis(vecs, np.abs(vecs).argmax(0)[None], 0) > 0), "largest entry of each vector positive"


def test_fancy_pca_adds_one_colour_per_image(device):
    x = _images(device=device)
    eigvals, eigvecs = A.fit_fancy_pca(x)
    alphas = 0.1 * torch.randn(6, 3, generator=_gen(5))
    out = A.fancy_pca(x, eigvals, eigvecs, alphas.to(device))
    shift = (out - x).cpu()
    expected = torch.stack([eigvecs.cpu() @ (a * eigvals.cpu()) for a in alphas])  # AlexNet's formula, per image
    torch.testing.assert_close(shift, expected[:, :, None, None].expand_as(shift), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn,args", [(A.rgb_to_hsv, ()), (A.fit_fancy_pca, ())])
def test_colour_functions_need_three_channels(fn, args):
    with pytest.raises(ValueError, match="3 channels"):
        fn(_images(c=1), *args)


@pytest.mark.parametrize("bad", [torch.rand(3, 8, 8), torch.randint(0, 255, (2, 3, 8, 8))])
def test_batches_must_be_float_nchw(bad):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        A.hflip(bad, True)


def test_one_value_per_sample():
    with pytest.raises(ValueError, match="one value per sample"):
        A.adjust_hsv(_images(), torch.ones(5), 1, 0, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="alphas"):
        A.fancy_pca(_images(), torch.ones(3), torch.eye(3), torch.zeros(5, 3))


# -------------------------------------------------------------------------------------------- sampling

def test_random_hflip_rate_and_reproducibility():
    x = torch.rand(4000, 1, 2, 3)
    params = A.RandomHFlip(p=0.3, generator=_gen(0)).sample(x)
    rate = params["mask"].float().mean().item()
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000), rate
    a = A.RandomHFlip(generator=_gen(7))(x)
    b = A.RandomHFlip(generator=_gen(7))(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_random_crop_offsets_are_uniform():
    x = torch.zeros(9000, 1, 8, 8)
    params = A.RandomCrop(8, padding=1, generator=_gen(1)).sample(x)
    for key in ("top", "left"):
        counts = torch.bincount(params[key], minlength=3).numpy()
        assert len(counts) == 3, f"{key} must range over 0..2"
        assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_hsv_jitter_ranges():
    x = torch.zeros(20000, 3, 1, 1)
    p = A.HSVJitter(generator=_gen(2)).sample(x)
    for key in ("s_pow", "v_pow"):
        log_p = p[key].log()
        assert log_p.min() >= math.log(0.25) - 1e-6 and log_p.max() <= math.log(4) + 1e-6
        u = (log_p - math.log(0.25)) / (math.log(4) - math.log(0.25))
        assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3, f"{key} must be log-uniform on [0.25, 4]"
    for key, (lo, hi) in [("s_mul", (0.7, 1.4)), ("v_mul", (0.7, 1.4)), ("s_add", (-0.1, 0.1)),
                          ("v_add", (-0.1, 0.1)), ("h_add", (-0.1, 0.1))]:
        v = p[key]
        assert v.min() >= lo and v.max() <= hi, key
        assert stats.kstest(((v - lo) / (hi - lo)).numpy(), "uniform").pvalue > 1e-3, key
    assert stats.pearsonr(p["s_mul"].numpy(), p["v_mul"].numpy()).pvalue > 1e-3, "S and V drawn independently"


def test_hsv_jitter_per_batch_draws_one_set_per_call():
    x = torch.rand(6, 3, 4, 4, generator=_gen(0))
    jitter = A.HSVJitter(per_batch=True, generator=_gen(3))
    batches = [jitter.sample(x) for _ in range(4000)]
    for p in batches[:5]:
        assert set(p) == {"s_pow", "s_mul", "s_add", "v_pow", "v_mul", "v_add", "h_add"}
        assert all(v.shape == (6,) and len(set(v.tolist())) == 1 for v in p.values()), "one draw for the batch"
    firsts = {k: torch.stack([p[k][0] for p in batches]) for k in batches[0]}
    assert len(set(firsts["v_mul"].tolist())) > 3990, "a new draw for every batch"
    u = (firsts["s_pow"].log() - math.log(0.25)) / (math.log(4) - math.log(0.25))
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3, "per-batch powers are log-uniform on [0.25, 4] too"
    assert stats.kstest(((firsts["h_add"] + 0.1) / 0.2).numpy(), "uniform").pvalue > 1e-3
    # applying per-batch factors is adjust_hsv with scalars
    p = batches[0]
    scalars = {k: float(v[0]) for k, v in p.items()}
    assert torch.allclose(jitter.apply(x, **p), A.adjust_hsv(x, **scalars), atol=1e-6)
    assert "per_batch=True" in repr(jitter)


def test_hsv_params_is_what_hsv_jitter_draws():
    x = torch.zeros(50, 3, 1, 1)
    for per_batch in (False, True):
        a = A.hsv_params(50, per_batch, _gen(7))
        b = A.HSVJitter(per_batch=per_batch, generator=_gen(7)).sample(x)
        assert all(torch.equal(a[k], b[k]) for k in a)
    narrow = A.hsv_params(1000, False, _gen(8), power=(1.0, 1.0), hue=(0.0, 0.0))
    assert torch.equal(narrow["s_pow"], torch.ones(1000)) and torch.equal(narrow["h_add"], torch.zeros(1000))


def test_fancy_pca_alphas_are_normal():
    x = torch.rand(20000, 3, 1, 1)
    t = A.FancyPCA(torch.ones(3), torch.eye(3), std=0.1, generator=_gen(3))
    alphas = t.sample(x)["alphas"]
    assert alphas.shape == (20000, 3)
    assert stats.kstest((alphas / 0.1).flatten().numpy(), "norm").pvalue > 1e-3
    a1, a2 = t.sample(x)["alphas"], t.sample(x)["alphas"]
    assert not torch.equal(a1, a2), "a fresh draw every time the image is used"


def test_random_resized_crop_boxes():
    x = torch.zeros(5000, 1, 28, 28)
    p = A.RandomResizedCrop(20, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3), generator=_gen(4)).sample(x)
    h, w, top, left = p["height"], p["width"], p["top"], p["left"]
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 28).all()
    area = (h * w).float() / 28 ** 2
    ratio = w.float() / h.float()
    rounding = 2 / 28  # boxes are rounded to whole pixels
    assert area.min() >= 0.3 - 2 * rounding and area.max() <= 1.0
    assert ratio.min() >= 0.75 * (1 - rounding) - 0.05 and ratio.max() <= 4 / 3 / (1 - rounding) + 0.05
    assert area.mean() > 0.5 and ratio.log().mean().abs() < 0.05
    # the resized crops themselves
    out = A.RandomResizedCrop(12, generator=_gen(5))(torch.rand(7, 3, 28, 28))
    assert out.shape == (7, 3, 12, 12)


def test_random_rotate_scale_ranges():
    p = A.RandomRotateScale(degrees=20, scale=(0.8, 1.2), generator=_gen(6)).sample(torch.zeros(5000, 1, 4, 4))
    assert p["angle"].abs().max() <= 20 and p["angle"].abs().max() > 19
    assert p["scale"].min() >= 0.8 and p["scale"].max() <= 1.2
    assert stats.kstest(((p["angle"] + 20) / 40).numpy(), "uniform").pvalue > 1e-3


def test_gaussian_noise_sampling(device):
    x = torch.full((64, 3, 16, 16), 0.5, device=device)
    out = A.GaussianNoise(sigma=0.05, generator=_gen(7))(x)
    assert out.device.type == device.type
    noise = (out - x).cpu()
    assert abs(noise.std().item() - 0.05) < 0.002 and abs(noise.mean().item()) < 0.001
    ref = TF.gaussian_noise(x.cpu(), sigma=0.05, clip=False) - x.cpu()
    assert abs(noise.std().item() - ref.std().item()) < 0.003, "same spread as torchvision's gaussian_noise"


def test_compose_runs_in_order_on_the_batch_device(device):
    x = _images(n=16, h=32, w=32, device=device)
    eigvals, eigvecs = A.fit_fancy_pca(x)
    pipe = A.Compose([A.RandomHFlip(generator=_gen(0)), A.RandomCrop(32, padding=4, generator=_gen(1)),
                      A.HSVJitter(generator=_gen(2)), A.FancyPCA(eigvals, eigvecs, generator=_gen(3)),
                      A.RandomResizedCrop(24, scale=(0.5, 1), generator=_gen(4)),
                      A.RandomRotateScale(generator=_gen(5)), A.GaussianNoise(0.02, generator=_gen(6))])
    out = pipe(x)
    assert out.shape == (16, 3, 24, 24) and out.device.type == device.type
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    # Compose is the transforms applied one after the other with the same parameters
    flip, crop = A.RandomHFlip(generator=_gen(0)), A.RandomCrop(32, padding=4, generator=_gen(1))
    torch.testing.assert_close(A.Compose([A.RandomHFlip(generator=_gen(0)), A.RandomCrop(32, padding=4, generator=_gen(1))])(x),
                               crop(flip(x)), rtol=0, atol=0)
    assert "HSVJitter" in repr(pipe)


@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    x = _images(n=8, h=32, w=32)
    eigvals, eigvecs = A.fit_fancy_pca(x)

    def pipe():
        return A.Compose([A.RandomHFlip(generator=_gen(0)), A.RandomCrop(32, padding=4, generator=_gen(1)),
                          A.HSVJitter(generator=_gen(2)), A.FancyPCA(eigvals, eigvecs, generator=_gen(3))])
    torch.testing.assert_close(pipe()(x.cuda()).cpu(), pipe()(x), rtol=0, atol=1e-5)
    a, b = A.fit_fancy_pca(x.cuda()), A.fit_fancy_pca(x)
    torch.testing.assert_close(a[0].cpu(), b[0], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------- the one-draw pipeline (BatchPipeline)

class _Ops(TorchDispatchMode):
    """Counts the aten ops that run inside the ``with`` block, by name."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


RANDOM_OPS = {"rand", "randn", "randint", "uniform_", "normal_", "random_", "bernoulli_", "randperm"}


def test_crop_with_flip_is_crop_of_hflip(device):
    x = _images(device=device)
    g = _gen(11)
    mask = torch.rand(6, generator=g) < 0.5
    top, left = torch.randint(0, 7, (6,), generator=g), torch.randint(0, 9, (6,), generator=g)
    out = A.crop(x, top.to(device), left.to(device), (18, 20), 2, flip=mask.to(device))
    torch.testing.assert_close(out, A.crop(A.hflip(x, mask), top, left, (18, 20), 2), rtol=0, atol=0)
    assert mask.any() and not mask.all(), "the test needs flipped and unflipped samples"


def test_batch_pipeline_is_the_functional_core_with_one_draw_on_the_batch_device(device):
    x = _images(n=32, h=16, w=16, device=device)
    eigen = A.fit_fancy_pca(x)
    pipe = A.BatchPipeline(16, padding=3, eigen=eigen)
    pipe(x)  # first call: the constants and eigenvectors are cached now
    with _Ops() as sampling:
        params = pipe.sample(x)
    drawn = {k: n for k, n in sampling.ops.items() if k in RANDOM_OPS}
    assert drawn == {"rand": 1}, f"all parameters must come from one torch.rand call, got {drawn}"
    assert all(v.device == x.device for v in [params["mask"], params["top"], params["alphas"], *params["hsv"].values()])
    with _Ops() as applying:
        out = pipe.apply(x, **params)
    built = {k: n for k, n in applying.ops.items() if k in {"lift_fresh", "_to_copy", "copy_"}}
    assert not built, f"no tensor may be built from host data or copied per call, got {built}"
    expected = A.fancy_pca(A.adjust_hsv(A.crop(A.hflip(x, params["mask"]), params["top"], params["left"], 16, 3),
                                        **params["hsv"]), *eigen, params["alphas"]).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert out.shape == x.shape and out.device == x.device


def test_batch_pipeline_draws_follow_their_laws():
    x = torch.zeros(20000, 3, 8, 8)
    pipe = A.BatchPipeline(8, padding=1, flip_p=0.3, eigen=(torch.ones(3), torch.eye(3)), pca_std=0.2,
                           generator=_gen(12))
    p = pipe.sample(x)
    rate = p["mask"].float().mean().item()
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 20000), rate
    for key in ("top", "left"):
        counts = torch.bincount(p[key], minlength=3).numpy()
        assert len(counts) == 3 and stats.chisquare(counts).pvalue > 1e-3, (key, counts)
    alphas = p["alphas"] / 0.2
    assert stats.kstest(alphas.flatten().numpy(), "norm").pvalue > 1e-3, "alphas ~ N(0, pca_std)"
    assert abs(np.corrcoef(alphas[:, 0].numpy(), alphas[:, 2].numpy())[0, 1]) < 0.03, "independent alphas"
    hsv = p["hsv"]
    u = (hsv["s_pow"].log() - math.log(0.25)) / (math.log(4) - math.log(0.25))
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3, "powers log-uniform on [0.25, 4]"
    for key, (lo, hi) in [("v_mul", (0.7, 1.4)), ("s_add", (-0.1, 0.1)), ("h_add", (-0.1, 0.1))]:
        assert stats.kstest(((hsv[key] - lo) / (hi - lo)).numpy(), "uniform").pvalue > 1e-3, key
    assert stats.pearsonr(hsv["s_mul"].numpy(), hsv["v_mul"].numpy()).pvalue > 1e-3, "S and V independent"
    again = A.BatchPipeline(8, padding=1, flip_p=0.3, eigen=(torch.ones(3), torch.eye(3)), pca_std=0.2,
                            generator=_gen(12)).sample(x)
    assert torch.equal(again["alphas"], p["alphas"]) and torch.equal(again["top"], p["top"]), "same seed, same draws"


def test_batch_pipeline_options():
    x = _images(n=8, h=12, w=12)
    shared = A.BatchPipeline(per_batch_hsv=True, generator=_gen(13)).sample(x)["hsv"]
    assert all(len(set(v.tolist())) == 1 for v in shared.values()), "per_batch_hsv: one set of factors per batch"
    plain = A.BatchPipeline(10, padding=0, flip=False, hsv=None, generator=_gen(14))
    p = plain.sample(x)
    assert not p["mask"].any() and p["hsv"] is None and p["alphas"] is None
    torch.testing.assert_close(plain.apply(x, **p), A.crop(x, p["top"], p["left"], 10), rtol=0, atol=0)
    grey = A.BatchPipeline(12, padding=2, hsv=None, generator=_gen(15))
    assert grey(torch.rand(4, 1, 12, 12)).shape == (4, 1, 12, 12), "flip + crop alone work on grey images"
    with pytest.raises(ValueError, match="3 channels"):
        A.BatchPipeline()(torch.rand(4, 1, 12, 12))
    assert "compiled=False" in repr(plain)


def test_batch_pipeline_compiled_matches_eager():
    """torch.compile(fullgraph=True) of the core (inductor on the CPU) against eager, same parameters."""
    x = _images(n=16, h=16, w=16, seed=3)
    eigen = A.fit_fancy_pca(x)
    eager = A.BatchPipeline(16, padding=2, eigen=eigen)
    compiled = A.BatchPipeline(16, padding=2, eigen=eigen, compiled=True)
    for seed in (0, 1):  # the second batch reuses the compiled graph
        params = A.BatchPipeline(16, padding=2, eigen=eigen, generator=_gen(seed)).sample(x)
        torch.testing.assert_close(compiled.apply(x, **params), eager.apply(x, **params), rtol=0, atol=1e-5)


def test_samplers_without_a_generator_draw_on_the_batch_device(device):
    x = _images(n=4, h=12, w=12, device=device)
    eigvals, eigvecs = A.fit_fancy_pca(x)
    samplers = [A.RandomHFlip(), A.RandomCrop(10, padding=1), A.RandomResizedCrop(8), A.RandomRotateScale(),
                A.HSVJitter(), A.FancyPCA(eigvals, eigvecs), A.GaussianNoise(), A.BatchPipeline(10, 1, eigen=(eigvals, eigvecs))]
    for sampler in samplers:
        params = sampler.sample(x)
        flat = [v for p in params.values() for v in (p.values() if isinstance(p, dict) else [p]) if torch.is_tensor(v)]
        assert flat and all(v.device == x.device for v in flat), f"{type(sampler).__name__} drew off the batch's device"


# Stand-ins for a student's answers, written with torch and torchvision only (none calls course_lib).

def _my_hflip(images, mask):
    return torch.where(mask.reshape(-1, 1, 1, 1), images.flip(-1), images)


def _my_crop(images, top, left, size, padding=0):
    return torch.stack([TF.crop(TF.pad(x, [padding]), int(t), int(le), size, size)
                        for x, t, le in zip(images, top, left)])


def _my_adjust_hsv(images, s_pow, s_mul, s_add, v_pow, v_mul, v_add, h_add):
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv
    per = lambda t: t.to(images.device, images.dtype).reshape(-1, 1, 1)  # noqa: E731
    h, s, v = _rgb_to_hsv(images).unbind(1)
    s = (s ** per(s_pow) * per(s_mul) + per(s_add)).clamp(0, 1)
    v = (v ** per(v_pow) * per(v_mul) + per(v_add)).clamp(0, 1)
    return _hsv_to_rgb(torch.stack([(h + per(h_add)) % 1.0, s, v], 1))


def _my_hsv_params(n, per_batch, generator):
    """Seven calls of torch.rand(k) in HSV_KEYS order: the same stream as hsv_params' torch.rand((7, k))."""
    k = 1 if per_batch else n
    lows = dict(s_pow=math.log(0.25), v_pow=math.log(0.25), s_mul=0.7, v_mul=0.7, s_add=-0.1, v_add=-0.1, h_add=-0.1)
    highs = dict(s_pow=math.log(4), v_pow=math.log(4), s_mul=1.4, v_mul=1.4, s_add=0.1, v_add=0.1, h_add=0.1)
    p = {key: lows[key] + (highs[key] - lows[key]) * torch.rand(k, generator=generator) for key in A.HSV_KEYS}
    p["s_pow"], p["v_pow"] = p["s_pow"].exp(), p["v_pow"].exp()
    return {key: v.expand(n) for key, v in p.items()}


def _my_fit_fancy_pca(images):
    vals, vecs = np.linalg.eigh(np.cov(images.transpose(0, 1).reshape(3, -1).double().numpy(), bias=True))
    vecs = vecs * np.sign(vecs[np.abs(vecs).argmax(0), range(3)])  # each column's largest entry positive
    return (torch.as_tensor(vals[::-1].copy(), dtype=images.dtype),
            torch.as_tensor(vecs[:, ::-1].copy(), dtype=images.dtype))


def _my_fancy_pca(images, eigvals, eigvecs, alphas):
    return images + ((alphas * eigvals) @ eigvecs.T)[:, :, None, None]


def _transforms(x, per_batch=False, **mine):
    """Chapter 01's transforms with the functions in ``mine`` (flip, crop, adjust, draw, fit, shift), if any."""
    pick = lambda *keys: {k: mine[k] for k in keys if k in mine}  # noqa: E731
    return A.Compose([A.RandomHFlip(generator=_gen(0), **pick("flip")),
                      A.RandomCrop(12, padding=2, generator=_gen(1), **pick("crop")),
                      A.HSVJitter(per_batch=per_batch, generator=_gen(2), **pick("adjust", "draw")),
                      A.FancyPCA.fit(x, generator=_gen(3), **pick("fit", "shift")),
                      A.RandomRotateScale(generator=_gen(4)), A.GaussianNoise(0.05, generator=_gen(5))])


MINE = dict(flip=_my_hflip, crop=_my_crop, adjust=_my_adjust_hsv, draw=_my_hsv_params, fit=_my_fit_fancy_pca,
            shift=_my_fancy_pca)


def test_the_transforms_take_the_students_functions_and_need_no_reference_then():
    """Chapter 01's notebook runs its transforms with the student's functions, in the student release, where
    every @reference of augment raises: with the references disabled, the transforms given the student's
    functions give what the references give; without them they call the references (so the release raises)."""
    from course_lib import grading

    marked = [f for f in vars(A).values() if getattr(f, "__course_reference__", None) == "01_augmentation"]
    assert {f.__name__ for f in marked} == {"hflip", "crop", "rgb_to_hsv", "hsv_to_rgb", "adjust_hsv", "hsv_params",
                                            "fit_fancy_pca", "fancy_pca", "_window_index", "_hue", "_hsv_channels",
                                            "_jitter", "_hsv_from_uniform"}
    x = _images(n=8, h=16, w=16, seed=4)
    expected = [_transforms(x)(x), _transforms(x, per_batch=True)(x)]
    with grading._disabled(marked):
        got = [_transforms(x, **MINE)(x), _transforms(x, per_batch=True, **MINE)(x)]
        for t in _transforms(x, fit=_my_fit_fancy_pca).transforms[1:4]:  # crop, HSV jitter, fancy PCA
            with pytest.raises(RuntimeError):  # the references are their defaults
                t(x)
        with pytest.raises(RuntimeError):
            A.FancyPCA.fit(x)
        with pytest.raises(RuntimeError):
            A.BatchPipeline(12, padding=2)(x)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
    assert not torch.equal(got[0], got[1]), "per image and per batch differ"
    with pytest.raises(ValueError, match="draw"):
        A.HSVJitter(hue=(0.0, 0.0), draw=_my_hsv_params)


def test_the_students_functions_get_their_parameters_on_the_batch_device(device):
    x = _images(n=4, h=12, w=12, device=device)
    seen = []

    def spy(fn):
        def wrapped(images, *args, **kwargs):
            seen.extend(a.device for a in [*args, *kwargs.values()] if torch.is_tensor(a))
            return fn(images, *args, **kwargs)
        return wrapped
    eigen = A.fit_fancy_pca(x)
    A.Compose([A.RandomHFlip(generator=_gen(0), flip=spy(_my_hflip)),
               A.RandomCrop(10, padding=1, generator=_gen(1), crop=spy(_my_crop)),
               A.HSVJitter(generator=_gen(2), adjust=spy(_my_adjust_hsv), draw=_my_hsv_params),
               A.FancyPCA(*eigen, generator=_gen(3), shift=spy(_my_fancy_pca))])(x)
    assert len(seen) == 1 + 2 + 7 + 3 and all(d == x.device for d in seen), seen
