class AdaDelta(Optimizer):
    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6):
        if lr < 0:
            raise ValueError(f"Invalid lr: {lr}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                eg2 = state.get("eg2", torch.zeros_like(p))        # running mean of g²
                edx2 = state.get("edx2", torch.zeros_like(p))      # running mean of the squared updates
                eg2 = rho * eg2 + (1 - rho) * g * g
                dx = torch.sqrt((edx2 + eps) / (eg2 + eps)) * g
                edx2 = rho * edx2 + (1 - rho) * dx * dx
                state["eg2"], state["edx2"] = eg2, edx2
                p -= lr * dx
