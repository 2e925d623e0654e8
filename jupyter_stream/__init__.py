"""jupyter_stream: stream an LLM's answer into a notebook, and stop it the instant you want."""

__version__ = "0.1.0"
