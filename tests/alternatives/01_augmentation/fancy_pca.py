def fancy_pca(images, eigvals, eigvecs, alphas):
    # shift[n] = sum_i alphas[n, i] · eigvals[i] · eigvecs[:, i], one RGB colour per image
    shift = torch.einsum("ci,ni->nc", eigvecs, alphas * eigvals)
    return images + shift[:, :, None, None]
