def numerical_gradient(f, x, h=1e-5):
    base = x.detach().double()
    grad = torch.empty_like(base)
    with torch.no_grad():
        for i in range(base.numel()):
            step = torch.zeros(base.numel(), dtype=torch.float64, device=base.device)
            step[i] = h
            step = step.view_as(base)
            grad.view(-1)[i] = (f(base + step).item() - f(base - step).item()) / (2 * h)
    return grad
