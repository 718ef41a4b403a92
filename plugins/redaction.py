"""Built-in plugin 'redaction' (being written)."""
