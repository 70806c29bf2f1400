def top_k(scores, k):
    s = torch.tensor([float(v) for v in scores], dtype=torch.float64)
    s = torch.where(torch.isnan(s), torch.full_like(s, -math.inf), s)   # NaN ranks with the lowest
    order = torch.sort(s, descending=True, stable=True).indices         # stable: ties keep the lower index first
    return order[:k].tolist()
