"""Built-in Chainsight plugins: each module is one concern and an ordinary pluggy plugin."""
