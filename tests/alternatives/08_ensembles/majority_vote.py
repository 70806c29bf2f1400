def majority_vote(logits):
    z = torch.stack(list(logits))                    # (K, N, C)
    k, n, c = z.shape
    pred = z.argmax(-1)                               # (K, N)
    votes = torch.zeros(n, c, dtype=torch.int64, device=z.device)
    votes.scatter_add_(1, pred.T, torch.ones(n, k, dtype=torch.int64, device=z.device))
    prob = torch.softmax(z, dim=-1).sum(0)            # (N, C)
    # rank first by votes, then by summed probability (both maxima; argmax takes the lowest index on a tie)
    most = votes.max(dim=1, keepdim=True).values
    score = torch.where(votes == most, prob, torch.full_like(prob, float("-inf")))
    return score.argmax(dim=1)
