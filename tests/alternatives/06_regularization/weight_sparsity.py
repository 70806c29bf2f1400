def weight_sparsity(model, tol=1e-3):
    small, total = 0, 0
    for p in model.parameters():
        if p.ndim >= 2:
            small += int(torch.count_nonzero(p.detach().abs() < tol))
            total += p.numel()
    return float(small / total)
