"""A Dify 1.14.1 service-API simulator for tests and the demo.

It reproduces the recorded behaviour in `/work/shared/dify-fixtures` (see DIFY.md): the workflow
run endpoints (blocking and streaming), run records, logs, stop, re-attach, and the node types the
project's workflows use. Start it with `python -m tests.difysim --port 5001`.
"""
