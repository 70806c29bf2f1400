class MomentumSGD(Optimizer):
    def __init__(self, params, lr, momentum=0.9):
        if lr < 0:
            raise ValueError(f"Invalid lr: {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in filter(lambda q: q.grad is not None, group["params"]):
                state = self.state[p]
                previous = state.get("momentum_buffer")
                # v <- g on the first step, v <- mu v + g afterwards; p <- p - lr v
                v = p.grad.clone() if previous is None else torch.add(p.grad, previous, alpha=mu)
                state["momentum_buffer"] = v
                p -= lr * v
