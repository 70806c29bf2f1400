def balanced_accuracy(y_true, y_pred, num_classes):
    recalls = []
    for c in range(num_classes):
        of_class = y_true == c
        n = int(of_class.sum())
        if n == 0:
            continue                         # an absent class has no recall and is left out
        recalls.append(int((y_pred[of_class] == c).sum()) / n)
    return sum(recalls) / len(recalls)
