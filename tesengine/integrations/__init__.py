"""Workflow runners built on tesengine's public API (each an optional extra)."""
