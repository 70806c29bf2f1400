def average_probs(logits):
    members = list(logits)                          # K tensors (N, C), from a list or a (K, N, C) tensor
    total = None
    for z in members:
        p = torch.exp(torch.log_softmax(z, dim=-1))  # stable: log-sum-exp inside
        total = p if total is None else total + p
    return total / len(members)
