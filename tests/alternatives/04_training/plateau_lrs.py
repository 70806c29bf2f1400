def plateau_lrs(val_losses, lr, k=2, patience=2, threshold=1e-4, min_lr=0.0):
    rates, best, since_best = [], float("inf"), 0
    for loss in val_losses:
        improved = loss < best * (1 - threshold)
        if improved:
            best = loss
        since_best = 0 if improved else since_best + 1
        if since_best > patience:
            since_best = 0
            lower = max(lr / k, min_lr)
            lr = lower if lr - lower > 1e-8 else lr
        rates.append(lr)
    return rates
