def early_stopping_point(values, patience, min_delta=0.0):
    values = list(values)
    if not values:
        return None, None
    best_i = 0
    for i in range(1, len(values)):
        if values[i] < values[best_i] - min_delta:
            best_i = i
        elif i - best_i >= patience:      # i - best_i epochs in a row without an improvement
            return best_i, i
    return best_i, None
