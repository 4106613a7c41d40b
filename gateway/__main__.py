"""`python -m gateway` is the `ringfence` command."""

from gateway.cli import main

raise SystemExit(main())
