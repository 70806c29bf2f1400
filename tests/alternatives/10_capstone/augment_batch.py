def augment_batch(images, flip, top, left, mean, std, padding):
    """Flip where `flip`, pad by `padding` and crop at (top, left), then normalize per channel."""
    n, c, h, w = images.shape
    mirrored = torch.where(flip.to(images.device).view(n, 1, 1, 1), images.flip(-1), images)
    padded = F.pad(mirrored, (padding, padding, padding, padding))          # zeros: black in pixel space
    out = torch.empty_like(images)
    for i in range(n):
        t, l = int(top[i]), int(left[i])
        out[i] = padded[i, :, t:t + h, l:l + w]
    scale = 1.0 / std.view(1, c, 1, 1)
    return (out - mean.view(1, c, 1, 1)) * scale
