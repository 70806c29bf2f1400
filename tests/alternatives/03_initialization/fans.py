def fans(weight):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as Python ints."""
    shape = tuple(weight.shape)
    if len(shape) < 2:
        raise ValueError(f"fans need a weight with 2 or more dimensions, not shape {shape}")
    out_channels, in_channels, *kernel = shape
    receptive_field = 1
    for k in kernel:
        receptive_field *= k
    return int(in_channels * receptive_field), int(out_channels * receptive_field)
