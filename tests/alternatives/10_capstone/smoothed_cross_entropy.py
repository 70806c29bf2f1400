def smoothed_cross_entropy(logits, target, eps):
    """Mean over the batch of (1 − eps)·(−log p_y) + eps·mean_c(−log p_c), p = softmax(logits)."""
    n, c = logits.shape
    shifted = logits - logits.max(dim=1, keepdim=True).values.detach()
    log_z = torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    neg_logp = log_z - shifted                                               # −log p_c, (N, C)
    # the smoothed target: 1 − eps + eps/C on the true class, eps/C elsewhere
    q = torch.full_like(neg_logp, eps / c)
    q[torch.arange(n, device=logits.device), target] += 1 - eps
    return (q * neg_logp).sum(dim=1).mean()
