"""Test helpers shipped with distill: a loopback OpenAI-compatible server with fault injection."""
