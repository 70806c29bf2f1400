def kaiming_normal_(weight, mode="fan_in", generator=None):
    """Fill `weight` in place with N(0, 2/fan), fan = fan_in or fan_out by `mode`; return it."""
    fan = dict(zip(("fan_in", "fan_out"), fans(weight)))
    if mode not in fan:
        raise ValueError(f"unknown mode {mode!r}: use 'fan_in' or 'fan_out'")
    z = torch.randn(weight.shape, generator=generator, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        weight.copy_(z * (2.0 / fan[mode]) ** 0.5)
    return weight
