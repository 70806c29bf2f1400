def activation_stds(model, x, types=(nn.Tanh, nn.ReLU)):
    """Std (a float) of the output of every nn.Tanh / nn.ReLU of `model` on `x`, in the order they run.

    Innocent local names that are also module names (`types`, `code`, `signal`, `inspect`) must not cost
    points (issue 19): they are judged by what they are bound to."""
    members = {id(m) for m in model.modules() if isinstance(m, types)}
    stds = []

    def record(module, inputs, output):
        if id(module) in members:
            signal = output.std()
            stds.append(float(signal))

    handle = nn.modules.module.register_module_forward_hook(record)  # a global hook, for every module
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    code, inspect = len(stds), stds
    return inspect[:code]
