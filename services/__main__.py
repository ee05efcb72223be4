"""``python -m services up|down|status|env``: see :mod:`services.supervisor`."""

from services.supervisor import main

raise SystemExit(main())
