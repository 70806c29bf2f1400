def freeze(model, prefixes):
    def covered(name, prefix):  # whole dotted components: "1" covers "1.weight", not "10.weight"
        parts = prefix.split(".")
        return name.split(".")[:len(parts)] == parts

    named = list(model.named_parameters())
    missing = [q for q in prefixes if not any(covered(n, q) for n, _ in named)]
    if missing:
        raise ValueError(f"no parameter is named by or lies under {missing}")
    frozen = [n for n, p in named if any(covered(n, q) for q in prefixes)]
    params = dict(named)
    for n in frozen:
        params[n].requires_grad = False
    return frozen
