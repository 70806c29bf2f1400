def pca(x):
    # via the SVD of the centred data: Xcᵀ Xc / N = V S² Vᵀ / N, singular values already decreasing
    centred = (x - x.mean(dim=0)).double()
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    return (singular ** 2 / x.shape[0]).to(x.dtype), vh.T.contiguous().to(x.dtype)
