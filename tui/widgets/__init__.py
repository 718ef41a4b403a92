"""Widgets of the Chainsight TUI."""
