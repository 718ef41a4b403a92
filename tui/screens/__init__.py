"""The screens of the Chainsight TUI, one module each."""
