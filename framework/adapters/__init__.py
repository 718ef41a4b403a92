"""Adapters that turn framework callbacks (LangChain, litellm) into spans."""
