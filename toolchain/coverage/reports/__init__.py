"""What a coverage run writes (``write``: coverage.json/.md, junit-coverage.xml, the step summary),
``html`` (coverage.html), ``summary`` (what a person reads first), ``baseline`` (the diff against an
earlier run) and ``fromjson`` (records back from their JSON)."""
