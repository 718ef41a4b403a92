"""Built-in plugin 'tui_command' (being written)."""
