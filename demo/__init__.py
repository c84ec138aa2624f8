"""The local demo: the real processes plus the Dify simulator with a review-loop workflow."""
