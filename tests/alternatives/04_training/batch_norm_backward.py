def batch_norm_backward(dout, x, gamma, eps=1e-5):
    # Backward through the staged graph mu -> xc -> var -> std -> xhat -> y (cs231n's unsimplified form).
    c = x.shape[1]
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, c] + [1] * (x.dim() - 2)
    m = x.numel() // c
    mu = x.mean(dim=dims, keepdim=True)
    xc = x - mu
    var = (xc * xc).mean(dim=dims, keepdim=True)
    std = torch.sqrt(var + eps)
    xhat = xc / std
    dbeta = dout.sum(dim=dims)
    dgamma = (dout * xhat).sum(dim=dims)
    dxhat = dout * gamma.reshape(shape)
    dvar = (dxhat * xc).sum(dim=dims, keepdim=True) * -0.5 * std ** -3
    dmu = -(dxhat / std).sum(dim=dims, keepdim=True) + dvar * (-2.0 / m) * xc.sum(dim=dims, keepdim=True)
    dx = dxhat / std + dvar * 2.0 * xc / m + dmu / m
    return dx, dgamma, dbeta
