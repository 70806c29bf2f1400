def long_tail_counts(n_max, num_classes, imbalance_ratio):
    if not imbalance_ratio >= 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if num_classes < 2:
        return [int(n_max)] * num_classes
    step = math.log(imbalance_ratio) / (num_classes - 1)     # n_c = n_max · exp(-c · ln(ratio) / (C - 1))
    counts = []
    for c in range(num_classes):
        value = n_max * math.exp(-c * step)
        counts.append(max(1, int(value + 1e-9)))
    return counts
