def adjust_hsv(images, s_pow, s_mul, s_add, v_pow, v_mul, v_add, h_add):
    n = images.shape[0]
    factors = [torch.as_tensor(f, dtype=images.dtype, device=images.device).reshape(-1).expand(n)
               for f in (s_pow, s_mul, s_add, v_pow, v_mul, v_add, h_add)]
    hsv = rgb_to_hsv(images)
    out = []
    for i in range(n):  # one image at a time, with its own factors
        sp, sm, sa, vp, vm, va, dh = (f[i] for f in factors)
        h = torch.remainder(hsv[i, 0] + dh, 1.0)
        s = torch.clamp(torch.pow(hsv[i, 1], sp) * sm + sa, 0.0, 1.0)
        v = torch.clamp(torch.pow(hsv[i, 2], vp) * vm + va, 0.0, 1.0)
        out.append(torch.stack([h, s, v]))
    return hsv_to_rgb(torch.stack(out))
