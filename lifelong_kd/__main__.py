"""``python -m lifelong_kd`` runs the command line."""

from .cli import main

raise SystemExit(main())
