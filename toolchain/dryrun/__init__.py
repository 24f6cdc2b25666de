"""Metal dry run: the tree's own Metal backend encodes every op on Linux, per GPU-family profile.

``build`` compiles the tree's Metal C++ files, ggml, test-backend-ops and the oracle's cut
supports_op with a stand-in for the Objective-C layer generated for the tree's own interface
(``standin``: derived from its headers, modelled where a verdict is decided, "modelled by default"
elsewhere, refused by name only when a verdict-deciding function changed beyond it); ``library`` reads each profile's kernel names from the tree's
``.metal`` sources with the loader's defines; ``run`` encodes a model's ops (per batch) or the
built-in cases and judges each (pass / missing-kernel / encoder-abort / over-limit / unsupported);
``validate`` explains every finding on the built-in cases; ``shipped`` checks a binary's embedded
library; ``contradict`` finds the oracle's "supported" the tree cannot encode; ``replay`` writes a
real crash report's case in the tree's own test-file format. Verdicts are ``observed_by: dry-run``: encoding only, nothing ran.
"""
