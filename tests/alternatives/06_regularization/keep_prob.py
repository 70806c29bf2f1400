def keep_prob_train(x, mask):
    return torch.where(mask.bool(), x, torch.zeros_like(x))

def keep_prob_test(x, keep_prob):
    if keep_prob <= 0 or keep_prob > 1:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    return keep_prob * x
