"""The notifier process: tells reviewers about checkpoints in chat and mail, takes their clicks.

This package holds the channel adapters (`channels/`), signed decision links and their confirmation
page (`links.py`); the process wiring (consuming `hitl.events`, routing, the store, publishing
decisions) builds on them.
"""
