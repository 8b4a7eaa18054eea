from __future__ import annotations

from guard.cli.main import main

raise SystemExit(main())
