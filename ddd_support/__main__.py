try:
    from ddd_support.cli import main
except KeyboardInterrupt:  # Ctrl-C while torch is still importing
    raise SystemExit(130) from None

raise SystemExit(main())
