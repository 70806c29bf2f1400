def zca_whiten(x, eps=1e-5):
    eigvals, eigvecs = pca(x)
    w = eigvecs @ torch.diag(1.0 / torch.sqrt(eigvals + eps)) @ eigvecs.T   # (C + eps I)^(-1/2), symmetric
    return (x - x.mean(dim=0)) @ w
