def hflip(images, mask):
    mask = torch.as_tensor(mask, dtype=torch.bool, device=images.device)
    out = images.clone()
    out[mask] = images[mask].flip(3)   # reverse the columns of the selected images only
    return out
