# read the curves with my own rules (exercises 1-3): the one that diverges, the one still falling in a straight line,
# and of the other two the one that ends lower is the good rate, the one that stalls higher the high rate
losses = dict(mystery)
too_high = next(letter for letter, loss in losses.items() if diverged_at(loss) is not None)


def still_straight(loss):
    ratio, drop = linearity(loss)
    return drop >= 0.01 and ratio >= 0.5


too_low = next(letter for letter, loss in losses.items() if letter != too_high and still_straight(loss))
final = {letter: smooth_ema(loss, 0.9)[-1] for letter, loss in losses.items()}
good, high = sorted(set(losses) - {too_high, too_low}, key=final.get)
answer = {too_high: LRS["too high"], too_low: LRS["too low"], good: LRS["good"], high: LRS["high"]}
