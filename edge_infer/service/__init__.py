"""Running as a service: the systemd notify protocol and what the board says about its health."""
