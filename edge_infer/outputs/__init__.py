"""Where results go. `registry` maps the names in the config's `outputs:` list to outputs; each
output's config lives beside its code. Importing this package imports no output (paho-mqtt)."""
