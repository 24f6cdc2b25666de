"""The on-device columns and the parsers of what their tools print: ``support`` and ``test``
(test-backend-ops on the model's ops, ``op_columns``, ``backend_ops``), ``e2e`` (decode on the
backend and the CPU, ``e2e_column``, ``e2e``), ``archs`` (the tree's test-llama-archs)."""
