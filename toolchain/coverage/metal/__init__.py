"""The Metal columns made off a Mac: ``metal-predicted`` (the oracle: the tree's ``supports_op`` per
GPU family, ``predicted``) and ``metal-dryrun`` (the tree's Metal encoders on a stand-in,
``dryrun``), sharing how a model's ops become cells and how those are kept (``columns``)."""
