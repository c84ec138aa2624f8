"""A Dify 1.14.1 service-API simulator for tests and the demo.

It reproduces the recorded behaviour in `/work/shared/dify-fixtures` (see DIFY.md): the workflow
run endpoints (blocking and streaming), run records, logs, stop, re-attach, the node types the
project's workflows use, and the Human Input node with its form API and timeouts.
Start it with `python -m tests.difysim --port 5001`.
"""
