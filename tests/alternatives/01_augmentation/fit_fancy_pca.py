def fit_fancy_pca(images):
    # PCA by the SVD of the centred pixel matrix: cov = V S² Vᵀ / N, singular values already in decreasing order.
    pixels = images.transpose(0, 1).reshape(3, -1).T.double()     # (N, 3), one row per pixel
    centred = pixels - pixels.mean(dim=0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    eigvals = singular ** 2 / pixels.shape[0]
    return eigvals.to(images.dtype), vh.T.contiguous().to(images.dtype)
