def calibrated_normal_(weight, generator=None):
    """Fill `weight` in place with N(0, 1/fan_in) samples drawn with `generator`; return it."""
    fan_in = fans(weight)[0]
    z = torch.randn(weight.shape, generator=generator, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        weight.copy_(z * fan_in ** -0.5)
    return weight
