def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.dim() - 2)
    per_channel = x.transpose(0, 1).reshape(c, -1)          # one row per channel: its N·H·W values
    if training:
        mean = per_channel.mean(dim=1)
        var = per_channel.var(dim=1, unbiased=False)
        with torch.no_grad():
            running_mean.copy_((1 - momentum) * running_mean + momentum * mean)
            running_var.copy_((1 - momentum) * running_var + momentum * per_channel.var(dim=1, unbiased=True))
    else:
        mean, var = running_mean, running_var
    scale = gamma / torch.sqrt(var + eps)
    return (x - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)
