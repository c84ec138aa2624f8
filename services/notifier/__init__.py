"""The notifier process: tells reviewers about checkpoints in chat and mail, takes their clicks.

`__main__.py` (the process), `service.py` (declared handlers: events → planned messages → jobs),
`routing.py` (HITL_NOTIFY), `delivery.py` (one job: send or update a card), `guard.py` (a platform's
trouble stays its own), `decisions.py` (clicks and links → decisions), `web.py` (the HTTP server),
`metrics.py`; the channel adapters in `channels/`, signed decision links in `links.py`.
"""
