def cyclic_cosine_lr(step, steps_per_cycle, lr_max):
    if not (step >= 1 and steps_per_cycle >= 1):
        raise ValueError(f"step and steps_per_cycle must be >= 1, got {step} and {steps_per_cycle}")
    t = (step - 1) - steps_per_cycle * ((step - 1) // steps_per_cycle)      # position in the cycle, 0..M-1
    # (1 + cos θ) / 2 = cos²(θ/2)
    return lr_max * math.cos(math.pi * t / (2 * steps_per_cycle)) ** 2
