def disjoint_shards(n, k, generator):
    if k < 1 or k > n:
        raise ValueError(f"k must lie in 1..{n}, got {k}")
    order = torch.argsort(torch.rand(n, generator=generator))   # sorting uniform keys: a uniform permutation
    per = n // k
    return torch.stack([order[j * per:(j + 1) * per] for j in range(k)])
