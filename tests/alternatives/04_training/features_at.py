def features_at(model, x, layer):
    modules = list(model.features.children())
    if layer < 0 or layer > len(modules):
        raise ValueError(f"layer={layer}: model.features has {len(modules)} modules")
    if layer == 0:
        return x.reshape(len(x), -1).detach()
    captured = []  # a forward hook on the last module wanted; the rest of the network runs, its output is ignored
    handle = modules[layer - 1].register_forward_hook(lambda module, inputs, output: captured.append(output))
    mode = model.training
    try:
        model.train(False)
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
        model.train(mode)
    return captured[0].reshape(len(x), -1).clone()
