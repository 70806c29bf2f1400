def hsv_params(n, per_batch, generator):
    # all seven factors from one (k, 7) draw of U(0, 1), mapped to their ranges column by column
    names = ["s_pow", "s_mul", "s_add", "v_pow", "v_mul", "v_add", "h_add"]
    low = torch.tensor([0.0, 0.7, -0.1, 0.0, 0.7, -0.1, -0.1])
    width = torch.tensor([1.0, 0.7, 0.2, 1.0, 0.7, 0.2, 0.2])
    rows = 1 if per_batch else n
    u = low + width * torch.rand(rows, 7, generator=generator)
    for j in (0, 3):                       # log-uniform on [0.25, 4]: 0.25 * 16**u
        u[:, j] = 0.25 * torch.pow(16.0, u[:, j])
    if per_batch:
        u = u.repeat(n, 1)
    return {name: u[:, j].contiguous() for j, name in enumerate(names)}
