def count_params(module):
    # module.parameters() yields each parameter tensor once, even when a layer is used twice
    return sum(p.numel() for p in module.parameters())
