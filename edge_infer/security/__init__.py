"""Secrets: kept out of what the program says (redact), and read from files or systemd's credentials
(credentials)."""
