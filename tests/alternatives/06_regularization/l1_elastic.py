def l1_penalty(model, lam=1.0):
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    weights = [p.flatten() for p in model.parameters() if p.ndim > 1]
    return lam * torch.cat(weights).abs().sum()

def elastic_net_penalty(model, l1=0.0, l2=0.0):
    if l1 < 0 or l2 < 0:
        raise ValueError(f"l1 and l2 must be >= 0, got {l1}, {l2}")
    weights = torch.cat([p.flatten() for p in model.parameters() if p.ndim > 1])
    return l1 * weights.abs().sum() + 0.5 * l2 * weights.pow(2).sum()
