def conv_output_size(n, kernel, stride=1, padding=0, dilation=1):
    if n < 1 or kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"invalid arguments n={n}, kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}")
    span = dilation * (kernel - 1) + 1           # the extent of the dilated kernel
    padded = n + 2 * padding
    if span > padded:
        raise ValueError(f"a kernel spanning {span} does not fit a padded input of {padded}")
    return len(range(0, padded - span + 1, stride))  # the window start positions
