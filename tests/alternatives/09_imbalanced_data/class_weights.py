def class_weights(counts, kind="inverse", beta=0.999):
    n = torch.tensor([float(v) for v in counts], dtype=torch.float64)
    if kind == "inverse":
        w = n.mean() / n                                  # N / (C n_c)
    elif kind == "effective":
        w = 1.0 / (1.0 - torch.pow(beta, n))             # the constant (1 - beta) cancels in the normalisation
        w = w / w.mean()                                  # sum to C
    else:
        raise ValueError(f"kind must be 'inverse' or 'effective', got {kind!r}")
    return w.to(torch.float32)
