def zero_center(x, mean=None):
    centre = x.sum(dim=0) / x.shape[0] if mean is None else mean
    return torch.sub(x, centre)
