def random_crop(x, offsets, padding):
    n, c, h, w = x.shape
    padded = x.new_zeros(n, c, h + 2 * padding, w + 2 * padding)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    offsets = offsets.to(x.device).long()
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)          # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)          # (N, W)
    i = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    ch = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[i, ch, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
