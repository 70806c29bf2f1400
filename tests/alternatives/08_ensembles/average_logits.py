def average_logits(logits):
    members = list(logits)
    return sum(members[1:], members[0]) / len(members)
