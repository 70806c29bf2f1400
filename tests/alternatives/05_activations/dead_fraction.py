def dead_fraction(h):
    alive = (h != 0).any(dim=0)
    return 1.0 - int(alive.sum()) / alive.numel()
