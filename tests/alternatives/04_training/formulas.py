def conv_weights(c_in, c_out, kh, kw, groups=1, bias=False):
    per_filter = (c_in // groups) * kh * kw      # each output channel sees c_in / groups input channels
    return c_out * per_filter + int(bool(bias)) * c_out


def head_params(channels, height, width, num_classes, gap):
    inputs = channels * (1 if gap else height * width)
    return (inputs + 1) * num_classes            # weights plus one bias per class
