"""``python -m agent`` runs the technician CLI."""

from agent.cli import main

raise SystemExit(main())
