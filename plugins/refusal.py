"""Built-in plugin 'refusal' (being written)."""
