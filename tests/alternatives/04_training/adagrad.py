class AdaGrad(Optimizer):
    def __init__(self, params, lr=1e-2, eps=1e-10):
        if lr < 0:
            raise ValueError(f"Invalid lr: {lr}")
        super().__init__(params, dict(lr=lr, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                state["sum_sq"] = state["sum_sq"] + g * g if "sum_sq" in state else g * g
                p -= group["lr"] * g / (torch.sqrt(state["sum_sq"]) + group["eps"])
