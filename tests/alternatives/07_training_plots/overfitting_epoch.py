def overfitting_epoch(train_losses, val_losses, rel_tol=0.02):
    tr = [float(v) for v in train_losses]
    va = [float(v) for v in val_losses]
    if len(va) < 2:
        return None
    best = min(range(len(va)), key=lambda i: (va[i], i))          # the first minimum
    rising = best < len(va) - 1 and va[-1] > (1 + rel_tol) * va[best]
    if not rising or not tr[-1] < tr[best]:
        return None
    return best + 2, va[-1] - tr[-1]
