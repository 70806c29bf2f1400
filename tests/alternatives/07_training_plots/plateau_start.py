def plateau_start(losses, patience, rel_tol=0.02, beta=0.9):
    s = smooth_ema(losses, beta)
    n = len(s)
    if n <= patience:
        return None
    # suffix minima, computed once from the end: later[t] = min(s[t+1:]) (inf after the last point)
    later = np.full(n, np.inf)
    for t in range(n - 2, -1, -1):
        later[t] = min(later[t + 1], s[t + 1])
    best = np.inf
    for t in range(n - patience):
        best = min(best, s[t])
        if later[t] >= (1 - rel_tol) * best:
            return t + 1
    return None
