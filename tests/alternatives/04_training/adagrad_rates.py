def adagrad_rates(grads, lr, eps=1e-10):
    grads = torch.as_tensor(grads)
    if grads.ndim < 1 or grads.shape[0] < 1:
        raise ValueError("adagrad_rates needs at least one gradient (shape (T, ...), T >= 1)")
    total = torch.zeros_like(grads[0])
    rows = []
    for g in grads:          # one step at a time, like AdaGrad.step
        total = total + g * g
        rows.append(lr / (total.sqrt() + eps))
    return torch.stack(rows)
