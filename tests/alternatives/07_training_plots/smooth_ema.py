def smooth_ema(values, beta=0.9):
    if beta < 0 or beta >= 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if hasattr(values, "detach"):
        values = values.detach().cpu().tolist()
    x = np.asarray(values, dtype=np.float64).ravel()
    # weighted average of the values so far, weight beta**(t - i) for value i: that *is* the bias-corrected EMA
    out = np.empty(len(x))
    num, den = 0.0, 0.0
    for t in range(len(x)):
        num = beta * num + x[t]
        den = beta * den + 1.0
        out[t] = num / den
    return out
