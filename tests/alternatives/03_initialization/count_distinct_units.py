def count_distinct_units(weight, tol=1e-6):
    """Number of rows (units) of `weight` that differ from every earlier row by more than `tol`."""
    rows = weight.detach().reshape(len(weight), -1).double()
    gap = (rows[:, None, :] - rows[None, :, :]).abs().amax(dim=-1)  # gap[i, j] = max |row_i - row_j|
    n = rows.shape[0]
    before = torch.arange(n)[None, :] < torch.arange(n)[:, None]  # before[i, j]: row j comes before row i
    repeats_an_earlier_row = ((gap <= tol) & before).any(dim=1)
    return n - int(repeats_an_earlier_row.sum())
