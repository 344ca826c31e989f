"""The Novu-compatible API under /novu/ (views.py) and Novu's shapes (shapes.py)."""
