def standardize(x, mean=None, std=None):
    mu = x.mean(dim=0) if mean is None else mean
    sigma = ((x - x.mean(dim=0)) ** 2).mean(dim=0).sqrt() if std is None else std  # population std (ddof 0)
    if (torch.as_tensor(sigma) == 0).any():
        raise ValueError("a feature is constant (std 0): cannot divide by it")
    return (x - mu) / sigma
