"""Built-in plugin 'json_schema' (being written)."""
