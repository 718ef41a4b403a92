"""Built-in plugin 'pricing' (being written)."""
