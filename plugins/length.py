"""Built-in plugin 'length' (being written)."""
