def steps_to_target(steps, accuracy, target):
    # NumPy arrays, then walk forward with a while loop until the accuracy is at the target
    s = np.asarray(steps, dtype=np.int64).reshape(-1)
    a = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    if s.size != a.size:
        raise ValueError(f"{s.size} steps but {a.size} accuracies")
    if s.size == 0:
        raise ValueError("no evaluations")
    i = 0
    while i < a.size and not a[i] >= float(target):  # NaN is never at the target
        i += 1
    return int(s[i]) if i < a.size else None


def fewer_steps_ratio(steps, acc_plain, acc_bn):
    plain = np.asarray(acc_plain, dtype=np.float64).reshape(-1)
    if plain.size == 0:
        raise ValueError("no evaluations")
    goal = plain[-1]
    n_bn = steps_to_target(steps, acc_bn, goal)
    if n_bn is None:
        return None
    return float(steps_to_target(steps, plain, goal)) / float(max(n_bn, 1))
