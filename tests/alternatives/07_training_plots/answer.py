# read the curves with course_lib.plots: the one that diverges, the one still falling in a straight line, and of
# the other two the one that ends lower is the good rate, the one that stalls higher the high rate
kinds = {letter: {f.kind for f in plots.diagnose(hist)} for letter, hist in mystery.items()}
final = {letter: plots.smooth(hist.to_frame("step")["train_loss"], 0.9)[-1] for letter, hist in mystery.items()}
too_high = next(letter for letter in kinds if "divergence" in kinds[letter])
too_low = next(letter for letter in kinds if "lr_too_low" in kinds[letter] and letter != too_high)
good, high = sorted(set(kinds) - {too_high, too_low}, key=final.get)
answer = {too_high: LRS["too high"], too_low: LRS["too low"], good: LRS["good"], high: LRS["high"]}
