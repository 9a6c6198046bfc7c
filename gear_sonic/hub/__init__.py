"""hub layer (see DESIGN.md)."""
