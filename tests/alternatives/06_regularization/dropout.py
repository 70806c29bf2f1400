def dropout_with_mask(x, mask, p):
    if p < 0 or p >= 1:
        raise ValueError(f"p must be in [0, 1), got {p}")
    keep = 1.0 - p
    return torch.where(mask.bool(), x / keep, torch.zeros_like(x))

def dropout(x, p=0.5, training=True, generator=None):
    if p < 0 or p >= 1:
        raise ValueError(f"p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    u = torch.rand(tuple(x.shape), generator=generator).to(x.device)
    keep = u < 1 - p                      # kept with probability 1 - p
    return dropout_with_mask(x, keep, p)
