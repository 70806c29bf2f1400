def bootstrap_sample(n, generator):
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (u * n).floor().long().clamp(max=n - 1)
