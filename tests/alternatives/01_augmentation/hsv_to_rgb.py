def hsv_to_rgb(images):
    # The classic sector algorithm: i = floor(6H), f = 6H - i, and (R, G, B) picked from v, p, q, t.
    h, s, v = images.unbind(1)
    h6 = (h % 1.0) * 6
    i = h6.floor()
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    table = torch.stack([torch.stack(rgb, 1) for rgb in
                         [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 1)  # (N, 6, 3, H, W)
    index = i[:, None, None].expand(-1, 1, 3, -1, -1)
    return table.gather(1, index).squeeze(1)
