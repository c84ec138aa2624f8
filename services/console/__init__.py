"""The review web console: inbox of open checkpoints, checkpoint pages to decide, runs with live node status."""
