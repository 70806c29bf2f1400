def elu(x, alpha=1.0):
    positive = x > 0
    # expm1 only ever sees x <= 0: no inf in the branch that is thrown away, and accurate near 0
    negative_branch = alpha * torch.expm1(x.masked_fill(positive, 0.0))
    return torch.where(positive, x, negative_branch)
