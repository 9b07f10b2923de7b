"""A fourth source, as small as the contract allows: a resting heart beating a fixed pattern.

It exists to show what adding a source takes: this package (declarations and fetch in
`source`, its parsers in `parse`) and one `register(TinySource)` line where it is used
(tests/test_source_contract.py). Nothing in fitpipe names it.
"""
