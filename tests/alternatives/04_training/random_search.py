def random_search(objective, space, n_trials, generator):
    draws = []
    for low, high, scale in space.values():
        if scale == "log":
            draws.append(log_uniform(low, high, n_trials, generator))
        else:
            draws.append(torch.rand(n_trials, generator=generator, dtype=torch.float64) * (high - low) + low)
    names = list(space)
    trials, best = [], None
    for values in zip(*(d.tolist() for d in draws)):
        params = dict(zip(names, values))
        trial = dict(params, value=float(objective(**params)))
        trials.append(trial)
        if best is None or trial["value"] < best["value"]:
            best = trial
    return best, trials
