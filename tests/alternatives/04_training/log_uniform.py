def log_uniform(low, high, n, generator):
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    log_low, log_high = math.log(low), math.log(high)
    return torch.exp(log_low + u * (log_high - log_low))
