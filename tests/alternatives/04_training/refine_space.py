def refine_space(space, best, shrink=0.25):
    out = {}
    for name in space:
        low, high, scale = space[name]
        forward = np.log10 if scale == "log" else (lambda v: v)
        back = (lambda v: float(10.0 ** v)) if scale == "log" else float
        a, b, c = float(forward(low)), float(forward(high)), float(forward(best[name]))
        width = (b - a) * shrink
        start = c - width / 2
        if start < a:
            start = a
        if start + width > b:
            start = b - width
        out[name] = (back(start), back(start + width), scale)
    return out
