def linearity(losses, beta=0.9):
    s = smooth_ema(losses, beta)
    n = len(s)
    w = n // 10 if n >= 10 else 1
    lo = n // 2 - w // 2
    if lo < 0:
        lo = 0
    first = s[0]
    middle = float(np.mean(s[lo:lo + w]))
    last = float(np.mean(s[n - w:]))
    fall = first - middle
    drop_ratio = (middle - last) / fall if fall > 0 else float("nan")
    return float(drop_ratio), float((first - last) / first)
