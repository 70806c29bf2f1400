def leaky_relu(x, negative_slope=0.01):
    # x times a per-element factor: 1 on the positive side, the slope elsewhere (x = 0 included)
    positive = (x > 0).to(x.dtype)
    return x * (positive + negative_slope * (1 - positive))
