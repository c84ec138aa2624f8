"""Dify DSL files (app exports): load and write them unchanged where untouched, validate their graph,
add the checkpoint recipe to them (`hitl instrument`) and check existing checkpoints (`hitl lint`)."""
