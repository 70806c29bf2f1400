def pca_whiten(x, eps=1e-5):
    eigvals, eigvecs = pca(x)
    scaled_basis = eigvecs * torch.rsqrt(eigvals + eps)   # column i divided by sqrt(S_i + eps)
    return (x - x.mean(dim=0)) @ scaled_basis
