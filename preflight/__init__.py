"""RL Preflight: a declarative checklist and preflight validator for LLM RL training runs."""

__version__ = "0.1.0"
