"""The Knock-compatible API under /knock/ (views.py) and Knock's shapes (shapes.py)."""
