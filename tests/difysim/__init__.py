"""A Dify service-API simulator for tests and the demo (see README.md beside this file).

It reproduces the recorded behaviour in `/work/shared/dify-fixtures` (see DIFY.md): the workflow
run endpoints (blocking and streaming), run records, logs, stop, re-attach, the node types the
project's workflows use, the Human Input node with its form API and timeouts, and the console's DSL
import. `--dify-version 1.17` adds what DIFY.md's "Newer Dify (1.15–1.17)" section describes.
Start it with `python -m tests.difysim --port 5001`.
"""
