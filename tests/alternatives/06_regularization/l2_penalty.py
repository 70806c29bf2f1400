def l2_penalty(model, lam=1.0):
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    total = None
    for p in model.parameters():
        if p.dim() < 2:
            continue                      # biases, batch-norm scales and shifts, PReLU slopes
        term = (p * p).sum()
        total = term if total is None else total + term
    if total is None:
        total = torch.zeros(())
    return lam / 2 * total
