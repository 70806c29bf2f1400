def rgb_to_hsv(images):
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    v, which = images.max(dim=1)            # which channel is the maximum: R first, then G, on ties
    c = v - images.min(dim=1).values
    safe_c = torch.where(c == 0, torch.ones_like(c), c)
    sectors = torch.stack([((g - b) / safe_c) % 6, (b - r) / safe_c + 2, (r - g) / safe_c + 4], dim=1)
    h = sectors.gather(1, which[:, None]).squeeze(1) / 6
    h = h.masked_fill(c == 0, 0.0)          # grey: hue 0
    s = (c / torch.where(v == 0, torch.ones_like(v), v)).masked_fill(v == 0, 0.0)
    return torch.stack([h, s, v], dim=1)
