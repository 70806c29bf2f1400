def sample_rrelu_slope(shape, lower, upper, generator=None):
    # 1 - u is uniform on (0, 1] when u is uniform on [0, 1)
    u = torch.rand(tuple(shape), generator=generator)
    return upper - (upper - lower) * u

def rrelu(x, lower=1 / 8, upper=1 / 3, training=False, slope=None):
    a = slope if training else torch.full_like(x, (lower + upper) / 2)
    factor = torch.where(x > 0, torch.ones_like(x), a)
    return factor * x
