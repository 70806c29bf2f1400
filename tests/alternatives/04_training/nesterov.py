class NesterovSGD(Optimizer):
    def __init__(self, params, lr, momentum=0.9):
        if lr < 0:
            raise ValueError(f"Invalid lr: {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                state = self.state[p]
                v = state["momentum_buffer"] = g.clone() if "momentum_buffer" not in state else mu * state["momentum_buffer"] + g
                p -= lr * (g + mu * v)  # look ahead along the new velocity
