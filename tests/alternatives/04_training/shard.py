def shard(global_batch, rank, world_size):
    size, leftover = divmod(global_batch, world_size)
    if leftover:
        raise ValueError(f"{global_batch} rows do not split into {world_size} equal shards")
    if rank < 0 or rank >= world_size:
        raise ValueError(f"rank {rank} does not exist in a world of {world_size}")
    start = rank * size
    return slice(start, start + size)
