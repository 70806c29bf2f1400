def curriculum_subset(difficulty, fraction):
    n = len(difficulty)
    k = int(-(-fraction * n // 1))  # ceil(fraction * n)
    return torch.sort(difficulty, stable=True).indices[:k]
