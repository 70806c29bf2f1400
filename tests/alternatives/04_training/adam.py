class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        checks = {"lr": lr >= 0, "eps": eps >= 0, "betas": len(betas) == 2 and all(0 <= b < 1 for b in betas)}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Invalid {name}: {dict(lr=lr, eps=eps, betas=betas)[name]}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                t = state["t"] = state.get("t", 0) + 1
                m = state["m"] = b1 * state.get("m", torch.zeros_like(p)) + (1 - b1) * g
                v = state["v"] = b2 * state.get("v", torch.zeros_like(p)) + (1 - b2) * g * g
                # the bias corrections folded into the step size and the denominator
                step_size = group["lr"] / (1 - b1 ** t)
                denom = v.sqrt() / math.sqrt(1 - b2 ** t) + group["eps"]
                p -= step_size * m / denom
