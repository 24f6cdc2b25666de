"""The matrix engine: plan the cells (``run``: inputs × backends, ``inputs``: the models, ``tools``:
what the build can run), run each cell with every column in isolation (``cell``), share identical
op cases (``cases``) and finished cells (``cellcache``), slice and merge (``shard``)."""
