def xavier_uniform_(weight, gain=1.0, generator=None):
    """Fill `weight` in place with U(-a, a), a = gain·sqrt(6/(fan_in+fan_out)); return it."""
    fan_in, fan_out = fans(weight)
    # U(-a, a) has variance a²/3; Glorot asks for gain²·2/(fan_in+fan_out)
    a = math.sqrt(3.0 * gain ** 2 * 2.0 / (fan_in + fan_out))
    u = torch.rand(weight.shape, generator=generator, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        weight.copy_(a * (2.0 * u - 1.0))
    return weight
