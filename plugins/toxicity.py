"""Built-in plugin 'toxicity' (being written)."""
