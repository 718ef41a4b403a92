"""chainsight-wordcount: an example Chainsight plugin (docs/PLUGINS.md walks through it)."""

__version__ = "0.1.0"
