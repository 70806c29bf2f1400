def whitening_filters(images, size, eps):
    """Patch-whitening (weight, bias) for a Conv2d(C, 2·C·size², size): filters, then their negatives."""
    n, c, h, w = images.shape
    # every size x size patch, flattened in (channel, row, column) order, by slicing instead of unfold
    rows = []
    for i in range(h - size + 1):
        for j in range(w - size + 1):
            rows.append(images[:, :, i:i + size, j:j + size].reshape(n, -1))
    patches = torch.cat(rows).double()                                       # (N·L, C·size²)
    mu = patches.mean(dim=0)
    x = patches - mu
    # the SVD of the centred patches: x = U S Vᵀ, covariance eigenvalues S² / n, eigenvectors the rows of Vᵀ
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    lam = s ** 2 / len(patches)                                              # already in decreasing order
    filters = vt / torch.sqrt(lam + eps)[:, None]                            # (K, D)
    bias = -(filters @ mu)
    weight = filters.reshape(-1, c, size, size).to(images.dtype)
    bias = bias.to(images.dtype)
    return torch.cat([weight, -weight]), torch.cat([bias, -bias])
