# read off the four plots: A blows up (too high), B falls in a slow straight line (too low),
# C keeps bending down to the lowest loss (good), D drops fast and then stalls higher (high)
answer = {"A": LRS["too high"], "B": LRS["too low"], "C": LRS["good"], "D": LRS["high"]}
