def flip_tta_probs(model, x):
    """(softmax(model(x)) + softmax(model(mirror of x))) / 2 in eval mode; the model's mode is restored."""
    mode = model.training
    model.train(False)
    with torch.no_grad():
        both = model(torch.cat([x, torch.flip(x, dims=[3])]))                 # one pass over both views
    model.train(mode)
    p = torch.softmax(both, dim=1)
    return 0.5 * (p[:len(x)] + p[len(x):])
