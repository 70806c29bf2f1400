def param_groups(model, lrs, default_lr=None):
    def covered(name, prefix):
        parts = prefix.split(".")
        return name.split(".")[:len(parts)] == parts

    members = {prefix: [] for prefix in lrs}
    rest = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owners = [q for q in lrs if covered(name, q)]
        if owners:
            members[max(owners, key=len)].append(p)   # the longest (most specific) prefix wins
        else:
            rest.append(p)
    groups = [dict(name=q, params=ps, lr=lrs[q]) for q, ps in members.items() if len(ps) > 0]
    if default_lr is not None and len(rest) > 0:
        groups.append(dict(name="default", params=rest, lr=default_lr))
    return groups
