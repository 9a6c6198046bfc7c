"""rl layer (see DESIGN.md)."""
