def sample_weights(y, num_classes):
    counts = torch.zeros(num_classes, dtype=torch.float64, device=y.device)
    counts.index_add_(0, y, torch.ones(len(y), dtype=torch.float64, device=y.device))
    return counts.reciprocal()[y].to(torch.float32)
