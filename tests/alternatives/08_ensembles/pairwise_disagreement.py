def pairwise_disagreement(logits):
    pred = torch.stack([z.argmax(dim=-1) for z in logits])           # (K, N)
    k, n = pred.shape
    out = torch.zeros(k, k)
    for i in range(k):
        for j in range(k):
            out[i, j] = (pred[i] != pred[j]).sum().item() / n
    return out
