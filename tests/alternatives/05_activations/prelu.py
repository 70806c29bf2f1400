def prelu(x, weight):
    if weight.numel() == 1:
        slope = weight.reshape(())
    else:
        shape = [1] * x.dim()
        shape[1] = weight.numel()
        slope = weight.view(shape)
    negative = (x <= 0).to(x.dtype)
    return x + (slope - 1) * negative * x
