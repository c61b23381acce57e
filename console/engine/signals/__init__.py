"""Signals the console is told rather than polls: events, inbound webhooks, recordings."""
