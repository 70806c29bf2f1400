def warmup_cosine(t, warmup, total, start_factor=0.01, min_factor=0.0):
    if t >= warmup:
        s = min(1.0, (t - warmup) / (total - warmup))          # progress through the decay, capped at 1
        return min_factor + (1 - min_factor) * (math.cos(math.pi * s) + 1) / 2
    w = t / warmup
    return start_factor * (1 - w) + w                         # straight line from start_factor to 1
