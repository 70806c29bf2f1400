def max_norm_(model, max_norm):
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    with torch.no_grad():
        for w in model.parameters():
            if w.ndim < 2:
                continue
            rows = w.view(w.shape[0], -1)
            norms = torch.sqrt((rows ** 2).sum(dim=1))
            too_long = norms > max_norm
            factor = torch.where(too_long, max_norm / torch.where(too_long, norms, torch.ones_like(norms)),
                                 torch.ones_like(norms))
            rows.mul_(factor[:, None])
    return model
