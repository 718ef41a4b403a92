"""Built-in plugin 'groundedness' (being written)."""
