def maxout(x, weight, bias, pieces):
    w = weight.reshape(-1, pieces, weight.shape[-1])            # (out, pieces, in)
    z = torch.einsum("ni,opi->nop", x, w)
    if bias is not None:
        z = z + bias.reshape(-1, pieces)
    out = z[..., 0]
    for k in range(1, pieces):
        out = torch.maximum(out, z[..., k])
    return out
