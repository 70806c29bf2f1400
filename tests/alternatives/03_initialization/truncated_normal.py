def truncated_normal_(weight, mean=0.0, std=0.1, generator=None):
    """Fill `weight` in place with N(mean, std²) restricted to mean ± 2·std; return it."""
    # Rejection sampling: draw standard normals, keep those within ±2 (about 95% of them).
    n = weight.numel()
    kept, count = [], 0
    while count < n:
        z = torch.randn(n + n // 10 + 16, generator=generator)
        z = z[z.abs() <= 2.0]
        kept.append(z)
        count += z.numel()
    z = torch.cat(kept)[:n].reshape(weight.shape).to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        weight.copy_(mean + std * z)
    return weight
