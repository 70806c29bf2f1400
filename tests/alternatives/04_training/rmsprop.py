class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8):
        if lr < 0:
            raise ValueError(f"Invalid lr: {lr}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                ms = state.get("mean_square", torch.zeros_like(p))
                ms = ms.lerp(p.grad * p.grad, 1 - group["alpha"])   # alpha·ms + (1 - alpha)·g²
                state["mean_square"] = ms
                p -= group["lr"] * p.grad / (ms.sqrt() + group["eps"])
