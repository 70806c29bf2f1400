def gd_epoch(model, x, y, order, batch_size, lr, reduction="mean"):
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []
    for batch in torch.split(order, batch_size):  # consecutive batches, the last one may be shorter
        loss = F.cross_entropy(model(x[batch]), y[batch], reduction=reduction)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p -= lr * g
        losses.append(float(loss))
    return losses
