"""Built-in plugin 'feedback' (being written)."""
