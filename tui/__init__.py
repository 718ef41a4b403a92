"""The Textual terminal UI. Nothing imports this package but the CLI, lazily."""
