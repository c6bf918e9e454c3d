try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python was still starting: nothing was done, nothing to say
    raise SystemExit(0) from None

raise SystemExit(main())
