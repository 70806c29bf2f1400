def initialize_(model, weight_init):
    """Apply `weight_init` to every nn.Linear / nn.Conv2d weight, zero their biases; return `model`."""
    def visit(module):
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            weight_init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    model.apply(visit)
    return model
