def diverged_at(losses, factor=3.0):
    x = np.asarray(losses, dtype=np.float64).ravel()
    if len(x) == 0:
        return None
    bad = np.flatnonzero(~np.isfinite(x) | (x > factor * x[0]))
    return int(bad[0]) + 1 if len(bad) else None
