"""asgi layer (see DESIGN.md)."""
